"""Driving the Kyutai engine row by row in tests, and whether it can run here.

CPU settings for moshi are set here, before torch or moshi is imported (tests/engine/conftest.py
imports this module first): no torch.compile (it needs a compiler and minutes) and one thread
(conv1d is far slower with two here).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stt.audio import float32_to_pcm16, pcm16_to_float32
from stt.constants import FRAME_SAMPLES
from stt.engine.interface import EngineEvent, StepInput
from tests.fakes import Listener
from tests.helpers import make_settings

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

KYUTAI_LIBS = all(importlib.util.find_spec(m) is not None for m in ("torch", "moshi", "sentencepiece"))
SKIP_REASON = "torch/moshi/sentencepiece not installed (the kyutai extra + moshi --no-deps; `make setup`)"

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


def reference_loop(
    checkpoint: Path, frames: Frames, lead_in: int = 0, reset_after: Sequence[int] = ()
) -> tuple[list[int], list[float]]:
    """Kyutai's own loop (stt_from_file_pytorch.py): Mimi encode, then `LMGen` at batch 1,
    frame by frame, after `lead_in` frames of silence; `LMGen` alone is reset after each step
    number in `reset_after` (counted from 1). Returns every step's text token and the
    end-of-turn probability (extra head 2, class 0) where the LM has that head."""
    import torch
    from moshi.models.lm import LMGen

    from stt.engine.kyutai.checkpoint import locate
    from stt.engine.kyutai.engine import load_model

    model = load_model(locate(str(checkpoint)), "cpu")
    gen = LMGen(model.lm, use_sampling=False, temp=0.0, temp_text=0.0, support_out_of_sync=True)
    silence = np.zeros((lead_in, FRAME_SAMPLES), dtype=np.float32)
    tokens, pauses = [], []
    with model.mimi.streaming(1), gen.streaming(1), torch.no_grad():
        for step, frame in enumerate(np.concatenate([silence, frames]), start=1):
            if step - 1 in reset_after:
                gen.reset_streaming()
            codes = model.mimi.encode(torch.from_numpy(frame)[None, None, :])
            out = gen.step_with_extra_heads(codes)
            assert out is not None
            text, heads = out
            tokens.append(int(text[0, 0, 0]))
            if len(heads) > 2:
                pauses.append(float(heads[2][0, 0, 0]))
    return tokens, pauses


class PlannedStreams:
    """Streams fed one frame per step through the real planner (lead-in, flush padding,
    acknowledgements), tokens recorded per stream."""

    def __init__(self, engine: Any) -> None:
        from stt.planner import StepPlanner

        self.engine = engine
        self.planner = StepPlanner(engine.info)
        self.tokens: dict[int, list[int]] = {}
        self.listeners: dict[int, Listener] = {}

    def open(self) -> int:
        listener = Listener()
        stream = self.planner.open(listener)
        assert stream is not None
        self.tokens[stream], self.listeners[stream] = [], listener
        return stream

    def step(self) -> None:
        plan = self.planner.plan()
        assert plan is not None
        out = self.engine.step(plan.input)
        for stream, slot in zip(plan.owners, plan.input.slots.tolist(), strict=True):
            self.tokens[stream].append(int(self.engine.last_tokens[slot]))
        self.planner.complete(plan, out)

    def run(self, frames: Frames, *, end: bool = False) -> list[int]:
        """One whole stream, alone (ended with a flush when `end`)."""
        stream = self.open()
        self.planner.push(stream, frames)
        if end:
            self.planner.finalize(stream, np.zeros(0, dtype=np.float32), end=True)
        while self.planner.has_work():
            self.step()
        return self.tokens[stream]
