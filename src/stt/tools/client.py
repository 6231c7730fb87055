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
from websockets.asyncio.client import ClientConnection, connect
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

    def word_latencies(self) -> list[float]:
        """Each Word's arrival minus when the audio up to its end had been sent, in order
        (words whose audio was never sent, such as a flush's, have none)."""
        latencies = []
        for received in self.messages:
            if received.message.get("type") == "Word":
                sent_at = self.audio_sent_at(float(received.message["end_s"]))
                if sent_at is not None:
                    latencies.append(received.at_s - sent_at)
        return latencies


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

    Without `realtime`, audio goes out as fast as the server allows: at most half of the
    backlog limit the server advertises in Ready ahead of real time, so a fast client never
    trips it. `on_message` sees each message as it arrives; `on_sent` gets the audio time
    sent so far.
    """
    result = StreamResult()
    async with connect(
        url, additional_headers=headers, open_timeout=open_timeout_s, max_size=None, ping_interval=None
    ) as ws:
        t0 = time.perf_counter()  # reset when Ready arrives: times count from the first audio

        def record(raw: str | bytes) -> dict[str, Any]:
            message: dict[str, Any] = json.loads(raw)
            received = Received(message, time.perf_counter() - t0)
            result.messages.append(received)
            if on_message is not None:
                on_message(received)
            return message

        try:
            async with asyncio.timeout(final_timeout_s + len(samples) / SAMPLE_RATE):
                first = await ws.recv()
                t0 = time.perf_counter()
                sender = None
                ready = record(first)
                if ready.get("type") == "Ready":
                    limits = ready.get("limits") or {}
                    pacing = _Pacing(
                        t0=t0,
                        lead_s=0.0 if realtime else _send_ahead_s(limits),
                        chunk_samples=min(chunk_samples, _max_chunk_samples(limits)),
                    )
                    sender = asyncio.create_task(
                        _send_audio(ws, samples, pacing, language, end_marker, result, on_sent)
                    )
                try:
                    async for raw in ws:
                        record(raw)
                finally:
                    if sender is not None:
                        sender.cancel()
                        await asyncio.gather(sender, return_exceptions=True)
        except ConnectionClosed:
            pass
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result


@dataclass(frozen=True)
class _Pacing:
    t0: float
    """perf_counter() at which the first audio goes out."""
    lead_s: float | None
    """Never send audio more than this ahead of real time; None: no pacing at all."""
    chunk_samples: int


def _send_ahead_s(limits: Mapping[str, Any]) -> float | None:
    backlog = limits.get("max_backlog_s")
    return float(backlog) / 2 if isinstance(backlog, int | float) and backlog > 0 else None


def _max_chunk_samples(limits: Mapping[str, Any]) -> int:
    max_ms = limits.get("max_chunk_ms")
    return int(max_ms * SAMPLE_RATE / 1000) if isinstance(max_ms, int | float) and max_ms > 0 else 1 << 62


async def _send_audio(
    ws: ClientConnection,
    samples: npt.NDArray[np.float32],
    pacing: _Pacing,
    language: str | None,
    end_marker: EndMarker,
    result: StreamResult,
    on_sent: Callable[[float], None] | None,
) -> None:
    if language is not None:
        await ws.send(json.dumps({"type": "Configure", "language": language}))
    pcm = float32_to_pcm16(samples)
    chunk_bytes = pacing.chunk_samples * 2
    for offset in range(0, len(pcm), chunk_bytes):
        chunk = pcm[offset : offset + chunk_bytes]
        end_s = (offset + len(chunk)) / 2 / SAMPLE_RATE
        if pacing.lead_s is not None:
            await asyncio.sleep(max(0.0, pacing.t0 + end_s - pacing.lead_s - time.perf_counter()))
        await ws.send(chunk)
        result.sent.append((end_s, time.perf_counter() - pacing.t0))
        if on_sent is not None:
            on_sent(end_s)
    if end_marker == "EOS":
        await ws.send(END_OF_STREAM_BYTES)
    else:
        await ws.send(json.dumps({"type": "CloseStream"}))
