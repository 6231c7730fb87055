"""A WebSocket client for the protocol in docs/protocol.md (CLI, stress tests, benchmarks).

It streams 24 kHz mono float audio as PCM16 chunks, optionally paced in real time, and
records every server message with its arrival time, plus when each chunk's audio was sent,
so callers can measure latency in the audio's own timeline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stt.audio import float32_to_pcm16
from stt.constants import CHUNK_SAMPLES, END_OF_STREAM_BYTES, SAMPLE_RATE

EndMarker = Literal["CloseStream", "EOS"]


@dataclass
class Received:
    """One server message and when it arrived (seconds since the stream's first audio)."""

    message: dict[str, Any]
    at_s: float


@dataclass
class StreamResult:
    """Everything a stream produced, in arrival order."""

    messages: list[Received] = field(default_factory=list)
    sent: list[tuple[float, float]] = field(default_factory=list)
    """(audio end in seconds, wall time since the first audio) for each chunk sent."""
    close_code: int | None = None
    close_reason: str = ""

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.message for r in self.messages if r.message.get("type") == kind]

    @property
    def ready(self) -> dict[str, Any] | None:
        found = self.of_type("Ready")
        return found[0] if found else None

    @property
    def words(self) -> list[dict[str, Any]]:
        return self.of_type("Word")

    @property
    def final(self) -> dict[str, Any] | None:
        found = self.of_type("Final")
        return found[-1] if found else None

    @property
    def error(self) -> dict[str, Any] | None:
        found = self.of_type("Error")
        return found[0] if found else None

    @property
    def transcript(self) -> str:
        """The Final's transcript, or the Word texts if no Final came."""
        final = self.final
        if final is not None:
            return str(final["transcript"])
        return " ".join(str(w["text"]) for w in self.words)

    def audio_sent_at(self, audio_s: float) -> float | None:
        """Wall time (since the first audio) at which audio up to `audio_s` had been sent."""
        for end_s, wall_s in self.sent:
            if end_s >= audio_s - 1e-9:
                return wall_s
        return None


async def stream_audio(
    url: str,
    samples: npt.NDArray[np.float32],
    *,
    chunk_samples: int = CHUNK_SAMPLES,
    realtime: bool = False,
    language: str | None = None,
    end_marker: EndMarker = "CloseStream",
    headers: Mapping[str, str] | None = None,
    on_message: Callable[[Received], None] | None = None,
    on_sent: Callable[[float], None] | None = None,
    open_timeout_s: float = 10.0,
    final_timeout_s: float = 60.0,
) -> StreamResult:
    """Stream `samples` to `url` and collect the server's messages until it closes.

    `on_message` sees each message as it arrives; `on_sent` gets the audio time sent so far.
    """
    result = StreamResult()
    pcm = float32_to_pcm16(samples)
    chunk_bytes = chunk_samples * 2
    async with connect(
        url, additional_headers=headers, open_timeout=open_timeout_s, max_size=None, ping_interval=None
    ) as ws:
        start = time.perf_counter()

        def record(raw: str | bytes) -> None:
            message = json.loads(raw)
            received = Received(message, time.perf_counter() - start)
            result.messages.append(received)
            if on_message is not None:
                on_message(received)

        async def send() -> None:
            nonlocal start
            if language is not None:
                await ws.send(json.dumps({"type": "Configure", "language": language}))
            start = time.perf_counter()
            for offset in range(0, len(pcm), chunk_bytes):
                chunk = pcm[offset : offset + chunk_bytes]
                end_s = (offset + len(chunk)) / 2 / SAMPLE_RATE
                if realtime:
                    await asyncio.sleep(max(0.0, start + end_s - time.perf_counter()))
                await ws.send(chunk)
                result.sent.append((end_s, time.perf_counter() - start))
                if on_sent is not None:
                    on_sent(end_s)
            if end_marker == "EOS":
                await ws.send(END_OF_STREAM_BYTES)
            else:
                await ws.send(json.dumps({"type": "CloseStream"}))

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(final_timeout_s + len(samples) / SAMPLE_RATE):
                async for raw in ws:
                    record(raw)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result
