"""One WebSocket stream as an explicit state machine, independent of the web framework.

The server adapts its socket to `Connection`; everything the protocol says about order,
limits, errors and close codes lives here, and every change of state goes through
`stt.session_state.StreamState.move`, which refuses illegal moves. Two tasks run per
session: the receive loop (client -> scheduler) and the send loop (outbox -> client). The
scheduler's listener callbacks only append to the outbox, so the engine loop never waits on
a slow client.

The session does not take its slot: the caller holds one for it with
`async with scheduler.stream(session) as handle: await session.run(conn, handle)`, so the
slot is released however the connection ends. Client messages are decoded by `decode`
(this server's wire format by default, `decode_message`), then checked against the
protocol's rules in `handle`; server messages are turned into wire frames by `encode`
(JSON text by default). Another protocol's adapter (stt.server.kyutai_protocol,
stt.server.realtime_protocol) passes its own decoder and encoder, sends frames of its own
with `send_frames`, and may watch each engine step (`on_step`); the slot, limits, errors,
metrics and drain stay this module's.

With `backpressure`, a client that sends audio faster than the engine steps it is slowed
instead of closed with too_fast: the receive loop stops reading while the backlog is above
`max_backlog_s` (TCP flow control then holds the client back), and waits for a token when
the message rate is above `max_messages_per_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from stt.audio import FrameAssembler, pcm16_view
from stt.constants import END_OF_STREAM_BYTES, FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE
from stt.engine.interface import Capacity, EngineEvent, EngineInfo, StreamOptions, WordEvent
from stt.limits import SessionLimits
from stt.logs import fields
from stt.messages import (
    ClientMessage,
    CloseStream,
    Configure,
    Error,
    ErrorCode,
    Final,
    Finalize,
    FinalStatus,
    Flushed,
    KeepAlive,
    Pause,
    ProtocolError,
    Ready,
    ServerMessage,
    StreamWarning,
    Word,
    parse_client_text,
)
from stt.metrics import Metrics
from stt.numerals import NumeralsFilter
from stt.ratelimit import TokenBucket
from stt.scheduler import StreamHandle
from stt.session_state import CloseReason, State, StreamState
from stt.watchdog import Watchdog

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


@dataclass(frozen=True, slots=True)
class Audio:
    """The next samples of the stream, PCM16 little-endian."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Samples:
    """The next samples of the stream as float32 in [-1, 1] (protocols that send floats)."""

    samples: npt.NDArray[np.float32]


ClientInput: TypeAlias = Audio | Samples | ClientMessage
"""A client message once its protocol's adapter has decoded it."""

Decoder: TypeAlias = Callable[[Binary | Text], ClientInput]
"""Turns one wire message into a ClientInput; raises ProtocolError for one it cannot read."""

Frame: TypeAlias = str | bytes
"""One WebSocket message to the client: text or binary."""

Encoder: TypeAlias = Callable[[ServerMessage], Sequence[Frame]]
"""Turns one of the session's messages into the wire frames of its protocol (maybe none)."""


def encode_message(message: ServerMessage) -> Sequence[Frame]:
    """This server's wire format: every message is one JSON text frame."""
    return (message.to_json(),)


def decode_message(message: Binary | Text) -> ClientInput:
    """This server's wire format (docs/protocol.md): binary is audio or the EOS marker,
    text is a JSON control. Raises ProtocolError(BAD_MESSAGE) for bad text."""
    if isinstance(message, Binary):
        return CloseStream() if message.data == END_OF_STREAM_BYTES else Audio(message.data)
    return parse_client_text(message.text)


class Connection(Protocol):
    """What a session needs of a WebSocket (the server adapts Starlette's to this)."""

    async def accept(self) -> None:
        """Complete the handshake (the slot is already held, so Ready follows)."""
        ...

    async def receive(self) -> Incoming:
        """Next message, or Disconnect once the peer is gone."""
        ...

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


_RECEIVING = frozenset({State.CONFIGURING, State.STREAMING, State.ENDING})
"""States in which client messages are acted on (SERVER_ENDING ignores them)."""
_SENDING = frozenset({State.CONFIGURING, State.STREAMING, State.ENDING, State.SERVER_ENDING})
"""States in which results, warnings and the one Final or Error still go out."""


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
    """A client stream: fed frame by frame through its slot's handle, answered word by word."""

    def __init__(
        self,
        info: EngineInfo,
        limits: SessionLimits,
        metrics: Metrics | None = None,
        *,
        session_id: str | None = None,
        client: str = "-",
        decode: Decoder = decode_message,
        encode: Encoder = encode_message,
        on_step: Callable[[], None] | None = None,
        backpressure: bool = False,
        pauses: bool = False,
        capacity: Callable[[], Capacity] | None = None,
    ) -> None:
        """`capacity`: what `Ready` reports of the server's capacity (read when it is sent)."""
        self.id = session_id or uuid.uuid4().hex
        self._capacity = capacity
        self.words: list[WordEvent] = []
        self._info = info
        self._limits = limits
        self._metrics = metrics or Metrics()
        self._client = client
        self._decode = decode
        self._encode = encode
        self._on_step = on_step
        self._backpressure = backpressure
        self._stepped = asyncio.Event()
        self.steps = 0
        """Engine steps that advanced this stream (counted when backpressure or on_step is on)."""
        self._state = StreamState()
        self._assembler = FrameAssembler()
        self._handle: StreamHandle | None = None
        self._outbox: asyncio.Queue[Frame | _Close] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._messages = TokenBucket(limits.max_messages_per_s, 2 * limits.max_messages_per_s)
        self._arrivals = _ArrivalClock()
        self._pauses = pauses
        self._numerals: NumeralsFilter | None = None
        """Rewrites numbers in the words sent, when Configure asked for digits or words."""
        self._opened = time.monotonic()
        self._ended_at: float | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._receiver: asyncio.Task[None] | None = None
        self._idle: Watchdog | None = None
        """Times each wait for a client message while the stream is open (idle_timeout_s)."""
        self._send_watch: Watchdog | None = None
        """Times each send (send_timeout_s)."""

    @property
    def state(self) -> State:
        return self._state.state

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the stream ended (or is ending); None while it is open."""
        return self._state.reason

    @property
    def audio_s(self) -> float:
        return self._assembler.samples_in / SAMPLE_RATE

    @property
    def backlog_samples(self) -> int:
        """`backlog_s` in samples."""
        if self._handle is None or self.state not in _SENDING:
            return 0
        return self._handle.backlog_frames * FRAME_SAMPLES + self._assembler.pending_samples

    @property
    def backlog_s(self) -> float:
        """Audio received but not yet stepped by the engine (none once closing: the planner
        may have let the stream go, and nothing more will be stepped for it)."""
        if self._handle is None or self.state not in _SENDING:
            return 0.0
        return self._handle.backlog_frames * FRAME_SECONDS + self._assembler.pending_samples / SAMPLE_RATE

    async def run(self, conn: Connection, handle: StreamHandle) -> None:
        """Accept the connection and serve the stream on `handle`'s slot until it completes,
        fails or the client leaves. The caller releases the slot (`Scheduler.stream` does).

        Ready is queued before the handshake, so a Warning or an end decided by the server
        while accept() runs (a drain) comes after it, and the session can be ended from then on.
        """
        self._handle = handle
        if self._backpressure or self._on_step is not None:
            handle.watch_steps(self._stepped_once)
        info = self._info
        capacity = self._capacity() if self._capacity is not None else None
        self._send(
            Ready(self.id, info.name, info.delay_s, info.languages, info.pause_events, self._limits, capacity)
        )
        self._arm_session_timer()
        loop = asyncio.get_running_loop()
        self._idle = Watchdog(loop, self._limits.idle_timeout_s, self._idle_expired)
        self._send_watch = Watchdog(loop, self._limits.send_timeout_s, self._send_expired)
        tasks: list[asyncio.Task[None]] = []
        try:
            await conn.accept()
            log.info("stream open", extra=fields(id=self.id, slot=handle.slot, client=self._client))
            receiver = asyncio.create_task(self._receive_loop(conn), name=f"recv-{self.id[:8]}")
            self._receiver = receiver
            sender = self._sender = asyncio.create_task(self._send_loop(conn), name=f"send-{self.id[:8]}")
            tasks += (receiver, sender)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done() and self.state is State.CLOSING:
                await asyncio.wait({sender}, timeout=self._limits.send_timeout_s)  # let Error / Final out
        finally:
            # Cancel without awaiting: nothing is left to wait for, and a second await while the
            # server is cancelling this handler would only delay (and re-cancel) it.
            for task in tasks:
                task.cancel()
            for timer in self._timers:
                timer.cancel()
            self._idle.cancel()
            self._send_watch.cancel()
            self._state.move(State.CLOSED)
            reason = self._state.reason
            assert reason is not None  # CLOSED always has one
            self._metrics.closes.labels(reason.value).inc()
            log.info(
                "stream closed",
                extra=fields(
                    id=self.id,
                    duration_s=time.monotonic() - self._opened,
                    audio_s=self.audio_s,
                    words=len(self.words),
                    reason=reason.value,
                ),
            )

    # -- decided by the server -------------------------------------------------------------

    def warn(self, code: str, message: str, remaining_s: float) -> None:
        """Tell the client the server will end the stream in `remaining_s`."""
        if self._state.is_open:
            self._send(StreamWarning(code, message, remaining_s))

    def end_by_server(self, status: FinalStatus) -> None:
        """End the stream as if the client had: flush, send a Final with `status`, close
        (with the status's close code). Audio the client sends afterwards is ignored (it
        could not know yet)."""
        if self._state.is_open:
            self._end_of_stream(State.SERVER_ENDING, CloseReason(status.value))

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
        self._timers.append(loop.call_later(limit, self.end_by_server, FinalStatus.MAX_DURATION))

    # -- client -> server ------------------------------------------------------------------

    async def _receive_loop(self, conn: Connection) -> None:
        idle = self._idle
        assert idle is not None  # run() made it
        while self.state in _SENDING:
            if self._backpressure:
                await self._hold_back()
            if self._state.is_open:
                idle.begin()
            try:
                message = await conn.receive()
            finally:
                idle.end()
            if isinstance(message, Disconnect):
                return
            self.receive(message)

    def _idle_expired(self) -> None:
        """A wait for a client message lasted idle_timeout_s: the Error, and the receive
        loop stops (as if its receive had timed out). Only while the stream is open: after
        the end of the stream, waiting for the client is not idling."""
        if not self._state.is_open:
            return
        self._fail(ErrorCode.IDLE_TIMEOUT, f"no audio or KeepAlive for {self._limits.idle_timeout_s:g} s")
        if self._receiver is not None:
            self._receiver.cancel()

    async def _hold_back(self) -> None:
        """Backpressure: read nothing more while the backlog is above its limit (until steps
        bring it down) or the message rate is above its limit (until a token is due)."""
        while self.state in _RECEIVING and self.backlog_s > self._limits.max_backlog_s:
            self._stepped.clear()
            await self._stepped.wait()
        due = self._messages.due_in_s()
        if due > 0 and self.state in _RECEIVING:
            await asyncio.sleep(due)  # the rate limit's timer, not a synchronisation

    def _stepped_once(self) -> None:
        """The engine advanced this stream by one frame (the scheduler calls this)."""
        self.steps += 1
        self._stepped.set()
        if self._on_step is not None and self.state in _SENDING:
            self._on_step()

    def receive(self, message: Binary | Text) -> None:
        """One client message off the wire: the size and rate limits, `decode`, then `handle`.
        A message that breaks the protocol ends the stream with an Error; once the server
        has ended the stream, messages are ignored (the client could not know yet)."""
        if self.state not in _RECEIVING:
            return
        try:
            self._check_message_limits(
                len(message.data) if isinstance(message, Binary) else _utf8_size(message.text)
            )
            self.handle(self._decode(message))
        except ProtocolError as exc:
            self._fail(exc.code, exc.message)

    def handle(self, message: ClientInput) -> None:
        """One decoded client message (the entry point for protocol adapters). Raises
        ProtocolError when it breaks the protocol; ignored once the server ended the stream."""
        if self.state not in _RECEIVING:
            return
        match message:
            case Audio(pcm):
                self._audio(pcm)
            case Samples(samples):
                self._samples(samples)
            case KeepAlive():
                pass
            case Configure() as configure:
                self._configure(configure)
            case Finalize():
                self._require_open("Finalize")
                self._state.move(State.STREAMING)
                self._stream.finalize(self._assembler.take_remainder(), end=False)
            case CloseStream():
                if self._state.is_open:
                    self._end_of_stream(State.ENDING, CloseReason.COMPLETE)
                # else: a second end marker (CloseStream then EOS) changes nothing

    def _check_message_limits(self, size: int) -> None:
        if size > self._limits.max_message_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds {self._limits.max_message_bytes}"
            )
        if not self._messages.take() and not self._backpressure:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"more than {self._limits.max_messages_per_s:g} messages per second; send larger chunks",
            )

    def _audio(self, data: bytes) -> None:
        self._require_open("audio")
        if len(data) % 2:
            raise ProtocolError(
                ErrorCode.BAD_FRAME, f"binary message of {len(data)} bytes is not PCM16 (odd byte count)"
            )
        # Kept as int16 until a step gathers it: the planner converts the whole batch at once.
        self._samples(pcm16_view(data))

    def _samples(self, audio: npt.NDArray[np.float32] | npt.NDArray[np.int16]) -> None:
        """Audio as float32 or int16 (PCM16) samples: the chunk limits, then into the
        stream's frames."""
        self._require_open("audio")
        samples = int(audio.size)
        if _ms(samples) > self._limits.max_chunk_ms:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"audio chunk of {_ms(samples):g} ms exceeds the {self._limits.max_chunk_ms:g} ms maximum",
            )
        state = self._state
        if state.short_chunk_ms is not None:
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"audio chunk of {state.short_chunk_ms:g} ms is below the {self._limits.min_chunk_ms:g} ms "
                "minimum; only the last chunk before Finalize or the end of stream may be shorter",
            )
        if state.state is State.CONFIGURING:
            state.move(State.STREAMING)
        if _ms(samples) < self._limits.min_chunk_ms:
            state.note_short_chunk(_ms(samples))
        stream = self._stream
        stream.push(self._assembler.push(audio))
        self._arrivals.mark(self._assembler.samples_in, time.monotonic())
        self._metrics.audio_seconds.inc(samples / SAMPLE_RATE)
        backlog = self.backlog_s
        self._metrics.stream_backlog.observe(backlog)
        if backlog > self._limits.max_backlog_s and not self._backpressure:
            raise ProtocolError(
                ErrorCode.TOO_FAST,
                f"audio arrives faster than the engine processes it: {backlog:.1f} s are waiting "
                f"(limit {self._limits.max_backlog_s:g} s); stream in real time, or use "
                "POST /v1/audio/transcriptions for whole files",
            )

    def _configure(self, message: Configure) -> None:
        self._require_open("Configure")
        if self.state is not State.CONFIGURING:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "Configure must come before any audio")
        languages = self._info.languages
        if message.language is not None and languages and message.language not in languages:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"unsupported language {message.language!r}; this engine supports: {', '.join(languages)}",
            )
        if message.pauses and not self._info.pause_events:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "this engine does not predict pauses")
        self._stream.configure(StreamOptions(language=message.language))
        self._pauses = message.pauses
        if message.numerals is not None:
            self._numerals = NumeralsFilter(message.numerals, message.language)
        if message.backpressure and not self._backpressure:
            self._backpressure = True
            if self._on_step is None:
                self._stream.watch_steps(self._stepped_once)

    def _end_of_stream(self, ending: State, reason: CloseReason) -> None:
        self._state.move(ending, reason)
        self._ended_at = time.monotonic()
        self._stream.finalize(self._assembler.take_remainder(), end=True)

    def _require_open(self, what: str) -> None:
        if not self._state.is_open:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} received after end of stream")

    @property
    def _stream(self) -> StreamHandle:
        if self._handle is None:
            raise RuntimeError("the session is not running: run() it on a handle first")
        return self._handle

    # -- server -> client (StreamListener) ------------------------------------------------

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        if self.state not in _SENDING:
            return
        now = time.monotonic()
        for event in events:
            if isinstance(event, WordEvent):
                self._send_words([event] if self._numerals is None else self._numerals.push([event]), now)
            else:
                self._release_held_words()  # the turn is over: no number goes on past it
                if self._pauses:
                    self._send(Pause(event.time_s, event.probability))

    def _send_words(self, words: Sequence[WordEvent], now: float) -> None:
        for word in words:
            self._observe_word_latency(word, now)
            self.words.append(word)
            self._send(Word(word.text, word.start_s, word.end_s))
        self._metrics.words.inc(len(words))

    def _release_held_words(self) -> None:
        """Words the numerals rewrite holds back (a number that might go on) go out now."""
        if self._numerals is not None:
            self._send_words(self._numerals.flush(), time.monotonic())

    def _observe_word_latency(self, word: WordEvent, now: float) -> None:
        arrived = self._arrivals.arrival_of(word.end_s * SAMPLE_RATE)
        if arrived is None:
            return
        self._metrics.word_latency.observe(now - arrived)
        if not self.words:
            self._metrics.first_word_latency.observe(now - arrived)

    def on_flushed(self) -> None:
        if self.state in _SENDING:
            self._release_held_words()
            self._send(Flushed(self.audio_s))

    def on_finished(self) -> None:
        reason = self._state.final_reason
        if reason is None:
            return  # already closing: an Error went out, or the client stopped reading
        status = reason.final_status
        assert status is not None  # ENDING and SERVER_ENDING hold a Final's reason
        self._release_held_words()
        self._send(Final(list(self.words), self.audio_s, status))
        if self._ended_at is not None:
            self._metrics.final_latency.observe(time.monotonic() - self._ended_at)
        self._close(reason)

    def on_failed(self, error: BaseException) -> None:
        log.error("stream failed in the engine", extra=fields(id=self.id, error=repr(error)))
        self._fail(ErrorCode.INTERNAL_ERROR, "the engine failed while processing this stream")

    # -- outbox ------------------------------------------------------------------------------

    def _send(self, message: ServerMessage) -> None:
        self._queue(self._encode(message))

    def send_frames(self, frames: Sequence[Frame]) -> None:
        """Queue frames of the adapter's own protocol behind what is queued (while results
        may still go out; ignored after the Final or Error)."""
        if self.state in _SENDING:
            self._queue(frames)

    def _queue(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            if self._outbox.qsize() >= self._limits.max_outbox_messages:
                self._abandon(f"{self._outbox.qsize()} messages unread")
                return
            self._outbox.put_nowait(frame)

    def _fail(self, code: ErrorCode, message: str) -> None:
        if self.state not in _SENDING:
            return
        log.info("stream error", extra=fields(id=self.id, code=code.value, message=message))
        self._metrics.errors.labels(code.value).inc()
        self._send(Error(code, message))
        self._close(CloseReason.of_error(code))

    def _close(self, reason: CloseReason) -> None:
        """Queue the close frame after what is queued (unless the client stopped reading)."""
        if self.state is State.ABANDONED:
            return
        self._state.move(State.CLOSING, reason)
        code = reason.close_code
        assert code is not None  # Finals and Errors close with a code
        self._outbox.put_nowait(_Close(code, reason.value))

    def _abandon(self, why: str) -> None:
        """The client does not read: stop without a close handshake, which could not be sent."""
        if self.state in (State.ABANDONED, State.CLOSED):
            return
        log.info("stream abandoned", extra=fields(id=self.id, why=why))
        self._state.move(State.ABANDONED)
        if self._sender is not None:
            self._sender.cancel()

    async def _send_loop(self, conn: Connection) -> None:
        watch = self._send_watch
        assert watch is not None  # run() made it
        try:
            while True:
                item = await self._outbox.get()
                watch.begin()
                if isinstance(item, _Close):
                    await conn.close(item.code, item.reason)
                    return
                if isinstance(item, str):
                    await conn.send_text(item)
                else:
                    await conn.send_bytes(item)
                watch.end()
        except (OSError, RuntimeError) as exc:
            log.debug("send failed; client gone", extra=fields(id=self.id, error=repr(exc)))
        finally:
            watch.end()

    def _send_expired(self) -> None:
        """A send (or the close) waited send_timeout_s for the client: abandon the stream
        (which cancels this loop's task)."""
        self._abandon(f"no data accepted for {self._limits.send_timeout_s:g} s")


def _utf8_size(text: str) -> int:
    """Byte size of a text message, without encoding huge ones just to measure them."""
    return len(text) * 4 if len(text) > 1 << 20 else len(text.encode("utf-8", "surrogatepass"))


def refuse_json(code: ErrorCode, message: str) -> str:
    """The Error message sent to a connection refused before it got a session."""
    return Error(code, message).to_json()


__all__ = [
    "Audio",
    "Binary",
    "ClientInput",
    "Decoder",
    "Connection",
    "Disconnect",
    "Encoder",
    "Frame",
    "Incoming",
    "Samples",
    "Session",
    "SessionLimits",
    "State",
    "Text",
    "decode_message",
    "encode_message",
    "refuse_json",
]
