"""One stream's timeline as a benchmark's listener sees it (callbacks run on the event loop).

Word latency is the word's arrival minus when the chunk holding the word's end was pushed:
what a live client waits, not counting the speaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamTimeline:
    """The scheduler's listener for one stream; `on_events` is the benchmark's own."""

    pushed: list[tuple[float, float]] = field(default_factory=list)
    """(audio seconds covered, wall time pushed) per chunk."""
    ended_at: float | None = None
    finished_at: float | None = None
    first_word_s: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failed: bool = False

    def latency(self, end_s: float, now: float) -> float:
        """How long after its audio was pushed a word ending at `end_s` arrived at `now`."""
        for covered, at in self.pushed:
            if covered >= end_s - 1e-6:
                return now - at
        return now - self.pushed[-1][1]

    def on_events(self, events: Sequence[Any]) -> None:
        now = time.perf_counter()
        for event in events:
            if hasattr(event, "text") and self.first_word_s is None:
                self.first_word_s = self.latency(event.end_s, now)

    async def play(self, handle: Any, audio: Any, chunk_frames: int) -> None:
        """Push `audio` (24 kHz float32) into the stream's handle in real time, `chunk_frames`
        80 ms frames at a time, then end the stream and wait until it has finished."""
        from stt.constants import FRAME_SAMPLES, SAMPLE_RATE

        chunk = chunk_frames * FRAME_SAMPLES
        t0 = time.perf_counter()
        whole = audio.size // FRAME_SAMPLES * FRAME_SAMPLES
        for i, offset in enumerate(range(0, whole, chunk)):
            await asyncio.sleep(max(0.0, t0 + i * chunk_frames * 0.08 - time.perf_counter()))
            part = audio[offset : min(offset + chunk, whole)]
            handle.push(part.reshape(-1, FRAME_SAMPLES))
            self.pushed.append(((offset + part.size) / SAMPLE_RATE, time.perf_counter()))
        self.ended_at = time.perf_counter()
        handle.finalize(audio[whole:], end=True)
        await asyncio.wait_for(self.done.wait(), 120)

    def on_flushed(self) -> None:
        pass

    def on_finished(self) -> None:
        self.finished_at = time.perf_counter()
        self.done.set()

    def on_failed(self, error: BaseException) -> None:
        self.failed = True
        self.done.set()
