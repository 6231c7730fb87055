"""One WebSocket stream as an explicit state machine, independent of the web framework.

The server adapts its socket to `Connection`; everything the protocol says about order,
errors and close codes lives here. Two tasks run per session: the receive loop (client ->
scheduler) and the send loop (outbox -> client). The scheduler's listener callbacks only
append to the outbox, so the engine loop never waits on a slow client.

States: OPEN (audio accepted; Configure allowed until the first audio) -> ENDING (end of
stream received; waiting for Final) -> CLOSED.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from stt.audio import FrameAssembler, pcm16_to_float32
from stt.constants import END_OF_STREAM_BYTES, SAMPLE_RATE
from stt.engine.protocol import EngineEvent, StreamOptions, WordEvent
from stt.protocol import (
    CloseCode,
    CloseStream,
    Configure,
    Error,
    ErrorCode,
    Final,
    Finalize,
    Flushed,
    KeepAlive,
    Pause,
    ProtocolError,
    Ready,
    ServerMessage,
    Word,
    parse_client_text,
)
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


# -- the session ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionLimits:
    idle_timeout_s: float = 10.0
    max_message_bytes: int = 1 << 20


class State(enum.Enum):
    OPEN = "open"
    ENDING = "ending"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Session:
    """A client stream: admitted to a slot, fed frame by frame, answered word by word."""

    def __init__(self, scheduler: Scheduler, limits: SessionLimits, session_id: str | None = None) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.state = State.OPEN
        self.close_reason = "open"
        self.words: list[WordEvent] = []
        self._scheduler = scheduler
        self._limits = limits
        self._assembler = FrameAssembler()
        self._handle: StreamHandle | None = None
        self._outbox: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._audio_started = False
        self._pauses = False
        self._closing = False
        self._opened = time.monotonic()

    @property
    def audio_s(self) -> float:
        return self._assembler.samples_in / SAMPLE_RATE

    def admit(self) -> bool:
        """Reserve a slot; False when the server is at capacity."""
        self._handle = self._scheduler.open(self)
        return self._handle is not None

    async def run(self, conn: Connection) -> None:
        """Serve the stream until it completes, fails or the client leaves."""
        if self._handle is None:
            raise RuntimeError("admit() the session before running it")
        info = self._scheduler.info
        self._send(Ready(self.id, info.name, info.delay_s, info.languages, info.pause_events))
        receiver = asyncio.create_task(self._receive_loop(conn), name=f"recv-{self.id[:8]}")
        sender = asyncio.create_task(self._send_loop(conn), name=f"send-{self.id[:8]}")
        try:
            await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done() and self._closing:
                await asyncio.wait({sender}, timeout=5.0)  # let the Error / Final go out
        finally:
            # Cancel without awaiting: nothing is left to wait for, and a second await while the
            # server is cancelling this handler would only delay (and re-cancel) it.
            for task in (receiver, sender):
                task.cancel()
            self._handle.close()
            if self.state is not State.CLOSED:
                self.state = State.CLOSED
                if self.close_reason == "open":
                    self.close_reason = "client_disconnected"
            log.info(
                "stream closed id=%s duration_s=%.2f audio_s=%.2f words=%d reason=%s",
                self.id,
                time.monotonic() - self._opened,
                self.audio_s,
                len(self.words),
                self.close_reason,
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
        self._audio_started = True
        assert self._handle is not None
        self._handle.push(self._assembler.push(pcm16_to_float32(data)))

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
        assert self._handle is not None
        self._handle.finalize(self._assembler.take_remainder(), end=True)

    def _require_open(self, what: str) -> None:
        if self.state is not State.OPEN:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} received after end of stream")

    # -- server -> client (StreamListener) ------------------------------------------------

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        if self._closing:
            return
        for event in events:
            if isinstance(event, WordEvent):
                self.words.append(event)
                self._send(Word(event.text, event.start_s, event.end_s))
            elif self._pauses:
                self._send(Pause(event.time_s, event.probability))

    def on_flushed(self) -> None:
        if not self._closing:
            self._send(Flushed(self.audio_s))

    def on_finished(self) -> None:
        if self._closing:
            return
        self._send(Final(list(self.words), self.audio_s))
        self.close_reason = "complete"
        self._close(CloseCode.NORMAL, "complete")

    def on_failed(self, error: BaseException) -> None:
        log.error("stream %s failed in the engine: %r", self.id, error)
        self._fail(ErrorCode.INTERNAL_ERROR, "the engine failed while processing this stream")

    # -- outbox ------------------------------------------------------------------------------

    def _send(self, message: ServerMessage) -> None:
        self._outbox.put_nowait(message.to_json())

    def _fail(self, code: ErrorCode, message: str) -> None:
        if self._closing:
            return
        log.info("stream %s error %s: %s", self.id, code.value, message)
        self._send(Error(code, message))
        self.close_reason = code.value
        self._close(code.close_code, code.value)

    def _close(self, code: int, reason: str) -> None:
        self._closing = True
        self._outbox.put_nowait(_Close(code, reason))

    async def _send_loop(self, conn: Connection) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, _Close):
                    self.state = State.CLOSED
                    await conn.close(item.code, item.reason)
                    return
                await conn.send_text(item)
        except (OSError, RuntimeError) as exc:
            log.debug("stream %s: send failed (%r); client gone", self.id, exc)


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
