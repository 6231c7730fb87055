"""Driving the Kyutai engine row by row in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stt.audio import float32_to_pcm16, pcm16_to_float32
from stt.constants import FRAME_SAMPLES
from stt.engine.interface import EngineEvent, StepInput
from tests.conftest import make_settings

Frames = npt.NDArray[np.float32]


def build(checkpoint: Path, slots: int = 4, **overrides: Any) -> Any:
    from stt.engine.registry import build_engine

    settings = make_settings(
        **({"engine": "kyutai", "model": str(checkpoint), "device": "cpu", "slots": slots} | overrides)
    )
    return build_engine(settings)


def clip(seed: int, frames: int = 36) -> Frames:
    """Noise bursts and silences of random lengths (PCM16-exact, like audio off the wire)."""
    rng = np.random.default_rng(seed)
    loudness = np.repeat(rng.choice([0.0, 0.05, 0.2], size=frames // 3 + 1), 3)[:frames]
    audio = rng.normal(0, 1, (frames, FRAME_SAMPLES)) * loudness[:, None]
    return pcm16_to_float32(float32_to_pcm16(audio.reshape(-1))).reshape(frames, FRAME_SAMPLES)


class Driver:
    """Feeds frames to slots step by step and records each slot's tokens and events."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tokens: dict[int, list[int]] = {}
        self.events: dict[int, list[EngineEvent]] = {}

    def step(self, rows: list[tuple[int, Frames, bool, bool]]) -> list[list[EngineEvent]]:
        """rows: (slot, frame, reset, flush)."""
        batch = StepInput(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.stack([r[1] for r in rows]).astype(np.float32),
            np.array([r[2] for r in rows]),
            np.array([r[3] for r in rows]),
        )
        out = self.engine.step(batch)
        assert len(out.events) == len(rows)
        for (slot, _, reset, _), events in zip(rows, out.events, strict=True):
            if reset:
                self.tokens[slot], self.events[slot] = [], []
            self.tokens[slot].append(int(self.engine.last_tokens[slot]))
            self.events[slot].extend(events)
        return [list(e) for e in out.events]

    def alone(
        self, slot: int, frames: Frames, flush_last: bool = False
    ) -> tuple[list[int], list[EngineEvent]]:
        """Run one whole stream in `slot` with nothing beside it."""
        for i, frame in enumerate(frames):
            self.step([(slot, frame, i == 0, flush_last and i == len(frames) - 1)])
        return self.tokens[slot], self.events[slot]
