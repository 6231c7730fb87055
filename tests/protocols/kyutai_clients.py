"""Clients of the moshi-server protocol that behave as Kyutai's own do (written for these tests).

`file_script` follows delayed-streams-modeling's scripts/stt_from_file_rust_server.py step
by step: the `kyutai-api-key` header, 1 s of silence, the clip in 1920-sample `Audio`
messages paced at `rtf` (a 1 ms pause when ahead of time), five 1 s messages of silence,
`Marker{id: 0}`, thirty-five 1 s messages of silence sent without pacing, and a receive
loop that skips `Step`, pairs `EndWord` with the last word and stops at the echoed Marker.

`UnmuteReader` reads `Step` as kyutai-labs/unmute's STT client does: every Step advances
its clock by 80 ms, the first 12 are ignored, then `prs[2]` feeds an exponential moving
average with 10 ms attack and release that starts at 1.0; Unmute calls a pause above 0.6
and lets the user interrupt the bot below 0.4.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect

SAMPLE_RATE = 24_000
FRAME_SIZE = 1920
FRAME_TIME_S = FRAME_SIZE / SAMPLE_RATE


@dataclass
class ScriptWord:
    text: str
    start: float
    stop: float


@dataclass
class ScriptRun:
    words: list[ScriptWord] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    marker_seen: bool = False
    other: list[dict[str, Any]] = field(default_factory=list)

    @property
    def transcript(self) -> str:
        return " ".join(w.text for w in self.words)


def pack(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_single_float=True)
    return data


async def _send_audio(ws: ClientConnection, audio: Any) -> None:
    await ws.send(pack({"type": "Audio", "pcm": [float(x) for x in audio]}))


async def _script_sender(ws: ClientConnection, audio: npt.NDArray[np.float32], rtf: float) -> None:
    await _send_audio(ws, [0.0] * SAMPLE_RATE)
    start = time.time()
    for i in range(0, len(audio), FRAME_SIZE):
        await _send_audio(ws, audio[i : i + FRAME_SIZE])
        expected = start + (i + 1) / SAMPLE_RATE / rtf
        now = time.time()
        # The script's own pacing: a timer, as in the original, not a synchronisation.
        await asyncio.sleep(expected - now if now < expected else 0.001)
    for _ in range(5):
        await _send_audio(ws, [0.0] * SAMPLE_RATE)
    await ws.send(pack({"type": "Marker", "id": 0}))
    for _ in range(35):
        await _send_audio(ws, [0.0] * SAMPLE_RATE)


async def _script_receiver(ws: ClientConnection, run: ScriptRun) -> None:
    async for raw in ws:
        data = msgpack.unpackb(raw, raw=False)
        if data["type"] == "Step":
            run.steps.append(data)
            continue
        if data["type"] == "Word":
            run.words.append(ScriptWord(data["text"], data["start_time"], data["start_time"]))
        elif data["type"] == "EndWord":
            if run.words:
                run.words[-1].stop = data["stop_time"]
        elif data["type"] == "Marker":
            run.marker_seen = True
            break
        else:
            run.other.append(data)


async def file_script(
    url: str, audio: npt.NDArray[np.float32], *, rtf: float, api_key: str = "public_token"
) -> ScriptRun:
    """Run the file script's exchange against `url` (…/api/asr-streaming)."""
    run = ScriptRun()
    async with connect(url, additional_headers={"kyutai-api-key": api_key}, max_size=None) as ws:
        await asyncio.gather(_script_sender(ws, audio, rtf), _script_receiver(ws, run))
    return run


class UnmuteReader:
    """Unmute's reading of Step messages: its clock and its pause prediction."""

    STEPS_IGNORED = 12

    def __init__(self, delay_s: float = 0.5) -> None:
        self.current_time = -delay_s
        self.pause = 1.0
        self._to_ignore = self.STEPS_IGNORED

    def step(self, message: dict[str, Any]) -> None:
        self.current_time += FRAME_TIME_S
        if self._to_ignore > 0:
            self._to_ignore -= 1
            return
        value = float(message["prs"][2])
        assert value >= 0.0  # Unmute's moving average asserts this too
        half_life = 0.01  # attack and release alike
        alpha = 1 - math.exp(-FRAME_TIME_S / half_life * math.log(2))
        self.pause = (1 - alpha) * self.pause + alpha * value

    @property
    def paused(self) -> bool:
        return self.pause > 0.6

    @property
    def speaking(self) -> bool:
        return self.pause < 0.4
