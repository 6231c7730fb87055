"""One WebSocket stream as an explicit state machine, independent of the web framework.

The server adapts its socket to `Connection`; everything the protocol says about order,
limits, errors and close codes lives here. Two tasks run per session: the receive loop
(client -> scheduler) and the send loop (outbox -> client). The scheduler's listener
callbacks only append to the outbox, so the engine loop never waits on a slow client.

States: OPEN (audio accepted; Configure allowed until the first audio) -> ENDING (end of
stream received or decided by the server; waiting for Final) -> CLOSED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from stt.audio import FrameAssembler, pcm16_to_float32
from stt.constants import END_OF_STREAM_BYTES, FRAME_SECONDS, SAMPLE_RATE
from stt.engine.interface import EngineEvent, StreamOptions, WordEvent
from stt.logs import fields
from stt.messages import (
    CloseCode,
    CloseStream,
    Configure,
    Error,
    ErrorCode,
    Final,
    Finalize,
    FinalStatus,
    Flushed,
    KeepAlive,
    Limits,
    Pause,
    ProtocolError,
    Ready,
    ServerMessage,
    StreamWarning,
    Word,
    parse_client_text,
)
from stt.metrics import Metrics
from stt.ratelimit import TokenBucket
from stt.scheduler import Scheduler, StreamHandle

log = logging.getLogger(__name__)


# -- the transport boundary ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int


Incoming: TypeAlias = Binary | Text | Disconnect


class Connection(Protocol):
    """What a session needs of a WebSocket (the server adapts Starlette's to this)."""

    async def receive(self) -> Incoming:
        """Next message, or Disconnect once the peer is gone."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


# -- limits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionLimits:
    """Per-stream limits (see Settings for their meaning). Defaults here are permissive;
    the server passes the configured ones."""

    idle_timeout_s: float = 10.0
    max_message_bytes: int = 1 << 20
    min_chunk_ms: float = 0.0
    max_chunk_ms: float = 60_000.0
    max_backlog_s: float = 3600.0
    max_messages_per_s: float = 0.0
    max_session_s: float = 0.0
    session_warning_s: float = 60.0
    max_outbox_messages: int = 100_000
    send_timeout_s: float = 30.0

    def advertised(self) -> Limits:
        return Limits(
            self.max_message_bytes,
            self.min_chunk_ms,
            self.max_chunk_ms,
            self.max_backlog_s,
            self.idle_timeout_s,
            self.max_session_s,
        )


class State(enum.Enum):
    OPEN = "open"
    ENDING = "ending"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class _ArrivalClock:
    """When each audio position arrived, to time words against the audio that ends them.

    Words come in time order, so marks before the latest word are dropped as they are used;
    `maxlen` bounds memory for long stretches without words.
    """

    def __init__(self) -> None:
        self._marks: deque[tuple[int, float]] = deque(maxlen=1024)

    def mark(self, samples_total: int, at: float) -> None:
        self._marks.append((samples_total, at))

    def arrival_of(self, sample: float) -> float | None:
        while len(self._marks) > 1 and self._marks[0][0] < sample:
            self._marks.popleft()
        return self._marks[0][1] if self._marks else None


def _ms(samples: int) -> float:
    return samples * 1000 / SAMPLE_RATE


# -- the session ---------------------------------------------------------------------------


class Session:
    """A client stream: admitted to a slot, fed frame by frame, answered word by word."""

    def __init__(
        self,
        scheduler: Scheduler,
        limits: SessionLimits,
        metrics: Metrics | None = None,
        *,
        session_id: str | None = None,
        client: str = "-",
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.state = State.OPEN
        self.close_reason = "open"
        self.words: list[WordEvent] = []
        self._scheduler = scheduler
        self._limits = limits
        self._metrics = metrics or Metrics()
        self._client = client
        self._assembler = FrameAssembler()
        self._handle: StreamHandle | None = None
        self._outbox: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._messages = TokenBucket(limits.max_messages_per_s, 2 * limits.max_messages_per_s)
        self._arrivals = _ArrivalClock()
        self._short_chunk_ms: float | None = None
        self._audio_started = False
        self._pauses = False
        self._closing = False
        self._server_ended = False
        self._final_status = FinalStatus.COMPLETE
        self._final_close = CloseCode.NORMAL
        self._opened = time.monotonic()
        self._ended_at: float | None = None
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def audio_s(self) -> float:
        return self._assembler.samples_in / SAMPLE_RATE

    @property
    def backlog_s(self) -> float:
        """Audio received but not yet stepped by the engine."""
        if self._handle is None or self._handle.closed:
            return 0.0
        return self._handle.backlog_frames * FRAME_SECONDS + self._assembler.pending_samples / SAMPLE_RATE

    def admit(self) -> bool:
        """Reserve a slot; False when the server is at capacity."""
        self._handle = self._scheduler.open(self)
        return self._handle is not None

    async def run(self, conn: Connection) -> None:
        """Serve the stream until it completes, fails or the client leaves."""
        if self._handle is None:
            raise RuntimeError("admit() the session before running it")
        info = self._scheduler.info
        self._send(
            Ready(
                self.id, info.name, info.delay_s, info.languages, info.pause_events, self._limits.advertised()
            )
        )
        log.info("stream open", extra=fields(id=self.id, slot=self._handle.slot, client=self._client))
        self._arm_session_timer()
        receiver = asyncio.create_task(self._receive_loop(conn), name=f"recv-{self.id[:8]}")
        sender = self._sender = asyncio.create_task(self._send_loop(conn), name=f"send-{self.id[:8]}")
        try:
            await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done() and self._closing:
                await asyncio.wait({sender}, timeout=self._limits.send_timeout_s)  # let Error / Final out
        finally:
            # Cancel without awaiting: nothing is left to wait for, and a second await while the
            # server is cancelling this handler would only delay (and re-cancel) it.
            for task in (receiver, sender):
                task.cancel()
            for timer in self._timers:
                timer.cancel()
            self._handle.close()
            self.state = State.CLOSED
            if self.close_reason == "open":
                self.close_reason = "client_disconnected"
            self._metrics.closes.labels(self.close_reason).inc()
            log.info(
                "stream closed",
                extra=fields(
                    id=self.id,
                    duration_s=time.monotonic() - self._opened,
                    audio_s=self.audio_s,
                    words=len(self.words),
                    reason=self.close_reason,
                ),
            )

    # -- decided by the server -------------------------------------------------------------

    def warn(self, code: str, message: str, remaining_s: float) -> None:
        """Tell the client the server will end the stream in `remaining_s`."""
        if not self._closing and self.state is State.OPEN:
            self._send(StreamWarning(code, message, remaining_s))

    def end_by_server(self, status: FinalStatus, close_code: CloseCode) -> None:
        """End the stream as if the client had: flush, send a Final with `status`, close.
        Audio the client sends afterwards is ignored (it could not know yet)."""
        if self._closing or self.state is not State.OPEN:
            return
        self._final_status = status
        self._final_close = close_code
        self._server_ended = True
        self._end_of_stream()

    def _arm_session_timer(self) -> None:
        limit = self._limits.max_session_s
        if limit <= 0:
            return
        loop = asyncio.get_running_loop()
        warning_at = max(0.0, limit - self._limits.session_warning_s)
        self._timers.append(
            loop.call_later(
                warning_at,
                self.warn,
                "session_ending",
                f"streams are limited to {limit:g} s; this one ends with a Final soon",
                limit - warning_at,
            )
        )
        self._timers.append(
            loop.call_later(limit, self.end_by_server, FinalStatus.MAX_DURATION, CloseCode.NORMAL)
        )

    # -- client -> server ------------------------------------------------------------------

    async def _receive_loop(self, conn: Connection) -> None:
        while not self._closing:
            timeout = self._limits.idle_timeout_s if self.state is State.OPEN else None
            try:
                async with asyncio.timeout(timeout):
                    message = await conn.receive()
            except TimeoutError:
                self._fail(ErrorCode.IDLE_TIMEOUT, f"no audio or KeepAlive for {timeout:g} s")
                return
            if isinstance(message, Disconnect):
                return
            if self._server_ended:
                continue  # the server ended the stream; the client may not know yet
            try:
                self._handle_message(message)
            except ProtocolError as exc:
                self._fail(exc.code, exc.message)
                return

    def _handle_message(self, message: Binary | Text) -> None:
        size = len(message.data) if isinstance(message, Binary) else _utf8_size(message.text)
        if size > self._limits.max_message_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds {self._limits.max_message_bytes}"
            )
        if not self._messages.take():
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self._limits.max_messages_per_s:g} messages per second; send larger chunks",
            )
        if isinstance(message, Binary):
            if message.data == END_OF_STREAM_BYTES:
                self._end_of_stream()
            else:
                self._audio(message.data)
            return
        match parse_client_text(message.text):
            case KeepAlive():
                pass
            case Configure() as configure:
                self._configure(configure)
            case Finalize():
                self._require_open("Finalize")
                self._audio_started = True
                self._short_chunk_ms = None
                assert self._handle is not None
                self._handle.finalize(self._assembler.take_remainder(), end=False)
            case CloseStream():
                self._end_of_stream()

    def _audio(self, data: bytes) -> None:
        self._require_open("audio")
        if len(data) % 2:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"binary message of {len(data)} bytes is not PCM16 (odd byte count)"
            )
        samples = len(data) // 2
        if _ms(samples) > self._limits.max_chunk_ms:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"audio chunk of {_ms(samples):g} ms exceeds the {self._limits.max_chunk_ms:g} ms maximum",
            )
        if self._short_chunk_ms is not None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"audio chunk of {self._short_chunk_ms:g} ms is below the {self._limits.min_chunk_ms:g} ms "
                "minimum; only the last chunk before Finalize or the end of stream may be shorter",
            )
        if _ms(samples) < self._limits.min_chunk_ms:
            self._short_chunk_ms = _ms(samples)
        self._audio_started = True
        assert self._handle is not None
        self._handle.push(self._assembler.push(pcm16_to_float32(data)))
        self._arrivals.mark(self._assembler.samples_in, time.monotonic())
        self._metrics.audio_seconds.inc(samples / SAMPLE_RATE)
        backlog = self.backlog_s
        self._metrics.stream_backlog.observe(backlog)
        if backlog > self._limits.max_backlog_s:
            raise ProtocolError(
                ErrorCode.TOO_FAST,
                f"audio arrives faster than the engine processes it: {backlog:.1f} s are waiting "
                f"(limit {self._limits.max_backlog_s:g} s); stream in real time, or use "
                "POST /v1/audio/transcriptions for whole files",
            )

    def _configure(self, message: Configure) -> None:
        self._require_open("Configure")
        if self._audio_started:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "Configure must come before any audio")
        languages = self._scheduler.info.languages
        if message.language is not None and languages and message.language not in languages:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"unsupported language {message.language!r}; this engine supports: {', '.join(languages)}",
            )
        if message.pauses and not self._scheduler.info.pause_events:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "this engine does not predict pauses")
        assert self._handle is not None
        self._handle.configure(StreamOptions(language=message.language))
        self._pauses = message.pauses

    def _end_of_stream(self) -> None:
        if self.state is State.ENDING:
            return  # a second end marker (CloseStream then EOS) changes nothing
        self.state = State.ENDING
        self._ended_at = time.monotonic()
        assert self._handle is not None
        self._handle.finalize(self._assembler.take_remainder(), end=True)

    def _require_open(self, what: str) -> None:
        if self.state is not State.OPEN:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} received after end of stream")

    # -- server -> client (StreamListener) ------------------------------------------------

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        if self._closing:
            return
        now = time.monotonic()
        for event in events:
            if isinstance(event, WordEvent):
                self._observe_word_latency(event, now)
                self.words.append(event)
                self._send(Word(event.text, event.start_s, event.end_s))
            elif self._pauses:
                self._send(Pause(event.time_s, event.probability))
        self._metrics.words.inc(sum(isinstance(e, WordEvent) for e in events))

    def _observe_word_latency(self, word: WordEvent, now: float) -> None:
        arrived = self._arrivals.arrival_of(word.end_s * SAMPLE_RATE)
        if arrived is None:
            return
        self._metrics.word_latency.observe(now - arrived)
        if not self.words:
            self._metrics.first_word_latency.observe(now - arrived)

    def on_flushed(self) -> None:
        if not self._closing:
            self._send(Flushed(self.audio_s))

    def on_finished(self) -> None:
        if self._closing:
            return
        self._send(Final(list(self.words), self.audio_s, self._final_status))
        if self._ended_at is not None:
            self._metrics.final_latency.observe(time.monotonic() - self._ended_at)
        self.close_reason = self._final_status.value
        self._close(self._final_close, self._final_status.value)

    def on_failed(self, error: BaseException) -> None:
        log.error("stream failed in the engine", extra=fields(id=self.id, error=repr(error)))
        self._fail(ErrorCode.INTERNAL_ERROR, "the engine failed while processing this stream")

    # -- outbox ------------------------------------------------------------------------------

    def _send(self, message: ServerMessage) -> None:
        if self._outbox.qsize() >= self._limits.max_outbox_messages:
            self._abandon(f"{self._outbox.qsize()} messages unread")
            return
        self._outbox.put_nowait(message.to_json())

    def _fail(self, code: ErrorCode, message: str) -> None:
        if self._closing:
            return
        log.info("stream error", extra=fields(id=self.id, code=code.value, message=message))
        self._metrics.errors.labels(code.value).inc()
        self._send(Error(code, message))
        self.close_reason = code.value
        self._close(code.close_code, code.value)

    def _close(self, code: int, reason: str) -> None:
        self._closing = True
        self._outbox.put_nowait(_Close(code, reason))

    def _abandon(self, why: str) -> None:
        """The client does not read: stop without a close handshake, which could not be sent."""
        if self.close_reason == "slow_consumer":
            return
        log.info("stream abandoned", extra=fields(id=self.id, why=why))
        self.close_reason = "slow_consumer"
        self._closing = True
        if self._sender is not None:
            self._sender.cancel()

    async def _send_loop(self, conn: Connection) -> None:
        try:
            while True:
                item = await self._outbox.get()
                async with asyncio.timeout(self._limits.send_timeout_s):
                    if isinstance(item, _Close):
                        await conn.close(item.code, item.reason)
                        return
                    await conn.send_text(item)
        except TimeoutError:
            self._abandon(f"no data accepted for {self._limits.send_timeout_s:g} s")
        except (OSError, RuntimeError) as exc:
            log.debug("send failed; client gone", extra=fields(id=self.id, error=repr(exc)))


def _utf8_size(text: str) -> int:
    """Byte size of a text message, without encoding huge ones just to measure them."""
    return len(text) * 4 if len(text) > 1 << 20 else len(text.encode("utf-8", "surrogatepass"))


def refuse_json(code: ErrorCode, message: str) -> str:
    """The Error message sent to a connection refused before it got a session."""
    return Error(code, message).to_json()


__all__ = [
    "Binary",
    "Connection",
    "Disconnect",
    "Incoming",
    "Session",
    "SessionLimits",
    "State",
    "Text",
    "refuse_json",
]
