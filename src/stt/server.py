"""The HTTP/WebSocket front: the only module that imports FastAPI.

`create_app` builds nothing at import time; the engine and scheduler are made in the
lifespan and live on `app.state`. Tests pass a ready engine in.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from stt.audio import read_audio
from stt.config import Settings
from stt.constants import PROTOCOL_VERSION, SAMPLE_RATE
from stt.engine.protocol import Engine, StreamOptions
from stt.engine.registry import build_engine
from stt.protocol import ErrorCode
from stt.scheduler import EngineFailedError, NoCapacityError, Scheduler
from stt.session import Binary, Disconnect, Incoming, Session, SessionLimits, Text, refuse_json

log = logging.getLogger(__name__)

STREAM_PATHS = ("/v1/stream", "/v1/transcribe")


class _StarletteConnection:
    """Adapts Starlette's WebSocket to `stt.session.Connection`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def receive(self) -> Incoming:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return Disconnect(1006)
        if message["type"] == "websocket.disconnect":
            return Disconnect(int(message.get("code") or 1005))
        data = message.get("bytes")
        if data is not None:
            return Binary(data)
        return Text(message.get("text") or "")

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str = "") -> None:
        await self._ws.close(code, reason)


def _error(status: int, code: str, message: str) -> JSONResponse:
    """OpenAI-style error body, so clients of that API handle ours unchanged."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The application. Without `engine`, the configured one is built at startup."""
    limits = SessionLimits(
        idle_timeout_s=settings.idle_timeout_s, max_message_bytes=settings.max_message_bytes
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = engine if engine is not None else await asyncio.to_thread(build_engine, settings)
        scheduler = Scheduler(built, batch_wait_s=settings.batch_wait_ms / 1000)
        await scheduler.start()
        app.state.scheduler = scheduler
        app.state.accepting = True
        log.info(
            "serving engine=%s slots=%d delay_s=%.2f",
            built.info.name,
            built.info.max_batch,
            built.info.delay_s,
        )
        try:
            yield
        finally:
            app.state.accepting = False
            await scheduler.stop()

    app = FastAPI(title="stt-server", version=str(PROTOCOL_VERSION), lifespan=lifespan)
    app.state.accepting = False

    def scheduler_of(app: FastAPI) -> Scheduler:
        scheduler: Scheduler = app.state.scheduler
        return scheduler

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the engine is warmed up and new streams are accepted."""
        scheduler: Scheduler | None = getattr(app.state, "scheduler", None)
        ready = bool(app.state.accepting and scheduler is not None and scheduler.running)
        body: dict[str, Any] = {"ready": ready}
        if scheduler is not None:
            body.update(slots_used=scheduler.used_slots, slots_total=scheduler.total_slots)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def stream(websocket: WebSocket) -> None:
        scheduler = scheduler_of(websocket.app)
        session = Session(scheduler, limits)
        await websocket.accept()
        if not session.admit():
            log.info("stream refused: all %d slots busy", scheduler.total_slots)
            code = ErrorCode.OVER_CAPACITY
            message = f"all {scheduler.total_slots} slots are busy; retry later"
            await websocket.send_text(refuse_json(code, message))
            await websocket.close(code.close_code, code.value)
            return
        log.info("stream open id=%s slot=%d", session.id, scheduler.used_slots)
        await session.run(_StarletteConnection(websocket))

    for path in STREAM_PATHS:
        app.add_api_websocket_route(path, stream)

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(
        file: Annotated[UploadFile, File(description="audio file: WAV, FLAC, OGG, MP3, ...")],
        language: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
    ) -> JSONResponse | dict[str, Any]:
        """Transcribe a whole file through the same batch as live streams (OpenAI-compatible)."""
        scheduler = scheduler_of(app)
        if response_format not in ("json", "verbose_json"):
            return _error(400, "bad_request", "response_format must be 'json' or 'verbose_json'")
        languages = scheduler.info.languages
        if language is not None and languages and language.lower() not in languages:
            return _error(400, "bad_request", f"unsupported language {language!r}; supported: {languages}")
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            return _error(413, "too_large", f"file exceeds {settings.max_upload_bytes} bytes")
        try:
            samples = await asyncio.to_thread(read_audio, io.BytesIO(data))
        except ValueError as exc:
            return _error(400, "bad_audio", str(exc))
        options = StreamOptions(language=language.lower() if language else None)
        try:
            words = await scheduler.transcribe(samples, options, slot_wait_s=settings.upload_wait_s)
        except NoCapacityError as exc:
            return _error(503, "over_capacity", str(exc))
        except EngineFailedError as exc:
            log.error("offline transcription failed: %r", exc.__cause__)
            return _error(500, "internal_error", "the engine failed while processing this file")
        text = " ".join(w.text for w in words)
        if response_format == "json":
            return {"text": text}
        return {
            "text": text,
            "duration": round(samples.size / SAMPLE_RATE, 3),
            "language": options.language,
            "words": [
                {"word": w.text, "start": round(w.start_s, 3), "end": round(w.end_s, 3)} for w in words
            ],
        }

    return app
