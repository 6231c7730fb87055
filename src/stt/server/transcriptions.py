"""`POST /v1/audio/transcriptions`, OpenAI's file transcription API: the multipart request
read under the upload limit, its fields checked, the file run through the live batch, and
the answer in the asked `response_format` (`stt.transcript_format` makes the bodies).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from stt.audio import AudioDecoder
from stt.config import Settings
from stt.engine.interface import StreamOptions, WordEvent
from stt.file_transcription import BadAudioError, FileTranscription, transcribe_file
from stt.logs import fields
from stt.messages import ErrorCode
from stt.metrics import Metrics
from stt.scheduler import EngineFailedError, NoCapacityError, Scheduler
from stt.server.errors import error_response
from stt.server.lifecycle import Lifecycle
from stt.transcript_format import (
    GRANULARITIES,
    RESPONSE_FORMATS,
    SSE_TYPE,
    STREAM_FORMATS,
    delta_event,
    done_event,
    error_event,
    render,
    sse,
)

log = logging.getLogger(__name__)

PATH = "/v1/audio/transcriptions"
FORM_OVERHEAD_BYTES = 64 << 10
"""Room for the multipart boundaries and the small fields beside the file: the request body
may exceed the upload limit by this much before it is refused unread."""
MAX_FIELD_BYTES = 64 << 10
"""Largest non-file field (a `prompt` is at most a few hundred tokens)."""

ENGINE_FAILED = "the engine failed while processing this file"
BAD_REQUEST = "bad_request"
BAD_AUDIO = "bad_audio"
TOO_LARGE = ErrorCode.TOO_LARGE.value


class RequestError(Exception):
    """A request refused before any transcription: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _BodyTooLargeError(Exception):
    """The request body grew past the limit while it was being read."""


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive`, raising _BodyTooLargeError once more than `limit` body bytes arrived (a client
    that sends no Content-Length, or a wrong one, is stopped as soon as it passes it)."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLargeError
        return message

    return receive_limited


@dataclass(frozen=True)
class TranscriptionRequest:
    """The form's fields, checked. `model`, `prompt`, `temperature` and `include[]` are
    accepted for compatibility but the engines cannot use them (see docs/protocol.md)."""

    file: UploadFile
    response_format: str = "json"
    language: str | None = None
    granularities: tuple[str, ...] = ()
    stream: bool = False


def _one(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(400, BAD_REQUEST, f"`{name}` must be a text field, not a file")
    return value


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise RequestError(400, BAD_REQUEST, f"`{name}` must be true or false, got {value!r}")


def parse_request(form: FormData, languages: tuple[str, ...]) -> TranscriptionRequest:
    """Check the form's fields against what the endpoint and the engine support."""
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise RequestError(400, BAD_REQUEST, "`file` is required: the audio, as a multipart file field")
    response_format = _one(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise RequestError(
            400,
            BAD_REQUEST,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response_format!r}",
        )
    language = _one(form, "language") or None
    if language is not None:
        language = language.lower()
        if languages and language not in languages:
            raise RequestError(
                400, BAD_REQUEST, f"unsupported language {language!r}; supported: {', '.join(languages)}"
            )
    granularities = [
        g for key in ("timestamp_granularities[]", "timestamp_granularities") for g in form.getlist(key)
    ]
    for granularity in granularities:
        if not isinstance(granularity, str) or granularity not in GRANULARITIES:
            raise RequestError(
                400, BAD_REQUEST, f"timestamp_granularities must be word and/or segment, got {granularity!r}"
            )
    stream = _flag(_one(form, "stream"), "stream")
    if stream and response_format not in STREAM_FORMATS:
        raise RequestError(
            400,
            BAD_REQUEST,
            "stream=true sends transcript.text events: response_format must be json or text, "
            f"got {response_format!r}",
        )
    temperature = _one(form, "temperature")
    if temperature is not None:
        try:
            value = float(temperature)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise RequestError(
                400, BAD_REQUEST, f"temperature must be a number from 0 to 1, got {temperature!r}"
            )
    for name in ("model", "prompt"):
        _one(form, name)  # accepted (and checked to be text) but unused
    unique = tuple(dict.fromkeys(str(g) for g in granularities))
    return TranscriptionRequest(file, response_format, language, unique, stream)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read before: only the end is left)."""
    while (await receive())["type"] != "http.disconnect":
        pass


Serve = Callable[[Scope, Send], Coroutine[Any, Any, None]]


class _Answer(Response):
    """Runs `serve` as the response and stops it the moment the client disconnects (the
    file's stream is dropped and its slot freed, not left to finish for nobody); `cleanup`
    (closing the uploaded file) runs after either."""

    def __init__(self, serve: Serve, cleanup: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._serve = serve
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serving = asyncio.create_task(self._serve(scope, send), name="stt-transcription")
        watching = asyncio.create_task(_disconnected(receive), name="stt-transcription-disconnect")
        try:
            await asyncio.wait({serving, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            serving.cancel()
            watching.cancel()
            outcome, _ = await asyncio.gather(serving, watching, return_exceptions=True)
            await self._cleanup()
        if isinstance(outcome, Exception):
            raise outcome


def _start_events() -> Message:
    headers = [
        (b"content-type", SSE_TYPE.encode()),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # proxies (nginx) pass each event on at once
    ]
    return {"type": "http.response.start", "status": 200, "headers": headers}


class TranscriptionRoute:
    """The endpoint: one instance per app, called once per request."""

    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        metrics: Metrics,
        scheduler_of: Callable[[Any], Scheduler],
    ) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._scheduler_of = scheduler_of
        self._max_bytes = settings.server.max_upload_bytes
        self._body_limit = self._max_bytes + FORM_OVERHEAD_BYTES
        self.running = 0
        """Files being transcribed now (each holds a slot)."""
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no file is being transcribed (every slot they held is free again);
        False if one still is after `timeout_s`. Tests await this instead of polling."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _too_large(self) -> RequestError:
        return RequestError(413, TOO_LARGE, f"the file exceeds the upload limit of {self._max_bytes} bytes")

    async def __call__(self, request: Request) -> Response:
        """Transcribe a whole file through the same batch as live streams (OpenAI-compatible)."""
        try:
            return await self._answer(request)
        except RequestError as exc:
            return error_response(exc.status, exc.code, exc.message)

    async def _read_form(self, request: Request) -> FormData:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._body_limit:
            raise self._too_large()  # refused before a byte of it is read
        limited = Request(request.scope, _limited(request.receive, self._body_limit))
        try:
            return await limited.form(max_files=1, max_fields=64, max_part_size=MAX_FIELD_BYTES)
        except _BodyTooLargeError:
            raise self._too_large() from None
        except HTTPException as exc:
            raise RequestError(400, BAD_REQUEST, f"cannot read the multipart form: {exc.detail}") from None

    async def _answer(self, request: Request) -> Response:
        scheduler = self._scheduler_of(request.app)
        if not self._lifecycle.accepting:
            return error_response(503, ErrorCode.DRAINING.value, "the server is shutting down")
        form = await self._read_form(request)
        try:
            asked = parse_request(form, scheduler.info.languages)
            if asked.file.size is not None and asked.file.size > self._max_bytes:
                raise self._too_large()
            try:
                decoder = await asyncio.to_thread(AudioDecoder, asked.file.file)
            except ValueError as exc:
                raise RequestError(400, BAD_AUDIO, str(exc)) from None
        except BaseException:
            await form.close()
            raise

        async def serve(scope: Scope, send: Send) -> None:
            await self._serve(scheduler, asked, decoder, scope, send)

        return _Answer(serve, form.close)

    async def _serve(
        self,
        scheduler: Scheduler,
        asked: TranscriptionRequest,
        decoder: AudioDecoder,
        scope: Scope,
        send: Send,
    ) -> None:
        options = StreamOptions(language=asked.language)
        self.running += 1
        self._idle.clear()
        try:
            async with transcribe_file(
                scheduler, decoder, options, slot_wait_s=self._settings.server.upload_wait_s
            ) as job:
                if asked.stream:
                    await self._send_events(job, send)
                else:
                    response = await self._whole(job, asked)
                    await response(scope, _no_receive, send)
        except NoCapacityError as exc:
            decoder.close()
            self._metrics.rejections.labels(ErrorCode.OVER_CAPACITY.value).inc()
            refusal = error_response(503, ErrorCode.OVER_CAPACITY.value, str(exc), {"Retry-After": "1"})
            await refusal(scope, _no_receive, send)
        finally:
            self.running -= 1
            if not self.running:
                self._idle.set()

    def _count(self, job: FileTranscription, words: int) -> None:
        self._metrics.audio_seconds.inc(job.duration_s)
        self._metrics.words.inc(words)

    async def _whole(self, job: FileTranscription, asked: TranscriptionRequest) -> Response:
        words: list[WordEvent] = []
        try:
            async for word in job.words():
                words.append(word)
        except BadAudioError as exc:
            return error_response(400, BAD_AUDIO, str(exc))
        except EngineFailedError as exc:
            log.error("file transcription failed", extra=fields(error=repr(exc.__cause__)))
            return error_response(500, ErrorCode.INTERNAL_ERROR.value, ENGINE_FAILED)
        self._count(job, len(words))
        rendered = render(
            asked.response_format,
            words,
            duration_s=job.duration_s,
            language=asked.language,
            granularities=asked.granularities,
        )
        return Response(rendered.body, media_type=rendered.media_type)

    async def _send_events(self, job: FileTranscription, send: Send) -> None:
        """`transcript.text.delta` per word as the engine emits it, then `transcript.text.done`
        (or an `error` event if the file or the engine fails on the way)."""
        await send(_start_events())
        words: list[WordEvent] = []
        try:
            async for word in job.words():
                event = sse(delta_event(word, first=not words))
                words.append(word)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            last = sse(done_event(words))
            self._count(job, len(words))
        except BadAudioError as exc:
            last = sse(error_event(BAD_AUDIO, str(exc)))
        except EngineFailedError as exc:
            log.error("file transcription failed", extra=fields(error=repr(exc.__cause__)))
            last = sse(error_event(ErrorCode.INTERNAL_ERROR.value, ENGINE_FAILED))
        await send({"type": "http.response.body", "body": last, "more_body": False})


async def _no_receive() -> Message:
    """A complete response never reads: the request was consumed and the disconnect is
    watched by `_Answer`."""
    raise RuntimeError("a transcription response does not receive")
