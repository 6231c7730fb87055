"""One uploaded file through a scheduler slot, beside the live streams.

The file is decoded block by block on a worker thread and fed to its stream only a few
seconds ahead of the engine (backpressure from the stream's own steps), so a long file costs
a block of memory, not its whole decoded length; the words come out as the engine emits
them, so an HTTP answer can stream them while the rest of the file is still being decoded
and transcribed. Leaving the `async with` (the client went away) drops the stream and frees
its slot at once. No web framework here: `stt.server.transcriptions` drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from stt.audio import Float32Array, FrameAssembler
from stt.constants import FRAME_SECONDS, SAMPLE_RATE
from stt.engine.interface import EngineEvent, StreamOptions, WordEvent
from stt.planner import StreamClosedError
from stt.scheduler import EngineFailedError, Scheduler, StreamHandle

AHEAD_S = 4.0
"""Audio fed to the stream but not yet stepped, at most: enough that the engine never waits
for the decoder, little enough that a long file is never held decoded."""


class BadAudioError(ValueError):
    """The file could not be decoded past some point (its header was fine)."""


class Decoder(Protocol):
    """What the feeder needs of a decoder (`stt.audio.AudioDecoder`); `read` runs on a
    worker thread, one call at a time."""

    finished: bool

    def read(self) -> Float32Array: ...

    def close(self) -> None: ...


class FileTranscription:
    """A file's stream: the scheduler's listener for it and the feeder of its audio.
    Made by `transcribe_file`; read its words with `async for word in job.words()`."""

    def __init__(self, decoder: Decoder, *, ahead_frames: int) -> None:
        self._decoder = decoder
        self._ahead = ahead_frames
        self._words: deque[WordEvent] = deque()
        self._changed = asyncio.Event()
        """Set when words, the end or a failure arrived."""
        self._stepped = asyncio.Event()
        """Set after each engine step that advanced this stream (and at the end)."""
        self._finished = False
        self._error: Exception | None = None
        self._reading: asyncio.Task[Float32Array] | None = None
        """The decoder's read in flight on a worker thread, if any."""
        self.samples = 0
        """Samples of 24 kHz audio decoded and fed so far (the file's length once finished)."""

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    # -- the scheduler's listener (called on the event loop) ----------------------------------

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        self._words.extend(e for e in events if isinstance(e, WordEvent))
        self._changed.set()

    def on_flushed(self) -> None:
        pass

    def on_finished(self) -> None:
        self._finished = True
        self._wake()

    def on_failed(self, error: BaseException) -> None:
        failure = EngineFailedError("the engine failed while processing this file")
        failure.__cause__ = error
        self._fail(failure)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._stepped.set()

    def step_done(self) -> None:
        self._stepped.set()

    # -- reading ------------------------------------------------------------------------------

    async def words(self) -> AsyncIterator[WordEvent]:
        """Every word in order, as the engine emits it; raises BadAudioError or
        EngineFailedError if the file or the engine fails on the way."""
        while True:
            while self._words:
                yield self._words.popleft()
            if self._error is not None:
                raise self._error
            if self._finished:
                return
            self._changed.clear()
            await self._changed.wait()

    async def feed(self, handle: StreamHandle) -> None:
        """Decode and push the file, staying at most `ahead_frames` ahead of the engine."""
        assembler = FrameAssembler()
        try:
            while not self._decoder.finished:
                self._reading = asyncio.create_task(asyncio.to_thread(self._decoder.read))
                try:
                    block = await asyncio.shield(self._reading)
                except ValueError as exc:
                    self._fail(BadAudioError(str(exc)))
                    return
                self.samples += block.size
                handle.push(assembler.push(block))
                while handle.backlog_frames > self._ahead and not self._finished and self._error is None:
                    self._stepped.clear()
                    await self._stepped.wait()
            handle.finalize(assembler.take_remainder(), end=True)
        except StreamClosedError:
            pass  # the stream failed or was dropped meanwhile: on_failed has said why

    async def close(self) -> None:
        """Close the decoder once no worker thread uses it: a read cancelled with its feeder
        still runs to its end, and the file under it must stay open until then."""
        reading = self._reading
        if reading is not None and not reading.done():
            await asyncio.wait({reading})
        if reading is not None and reading.done() and not reading.cancelled():
            reading.exception()  # retrieved: a failure after the end concerns nobody
        self._decoder.close()


@contextlib.asynccontextmanager
async def transcribe_file(
    scheduler: Scheduler,
    decoder: Decoder,
    options: StreamOptions | None = None,
    *,
    slot_wait_s: float,
    ahead_s: float = AHEAD_S,
) -> AsyncIterator[FileTranscription]:
    """Take a slot (raises NoCapacityError if none frees within `slot_wait_s`), start feeding
    the file, and yield the job; on exit the feeder stops and the slot is freed."""
    job = FileTranscription(decoder, ahead_frames=max(1, round(ahead_s / FRAME_SECONDS)))
    async with scheduler.stream(job, options, wait_s=slot_wait_s) as handle:
        handle.watch_steps(job.step_done)
        feeder = asyncio.create_task(job.feed(handle), name="stt-file-feeder")
        try:
            yield job
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            await job.close()
