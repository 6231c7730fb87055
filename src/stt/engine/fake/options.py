"""The fake engine's options (flags `--fake-*`); imports nothing but the settings helper."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from stt.setting import Checked, setting

DEFAULT_SLOTS = 64
"""Streams when `--slots` is not given: the fake costs nothing per stream."""


@dataclass(frozen=True)
class FakeOptions(Checked):
    prefix: ClassVar[str] = "fake_"

    delay_frames: int = setting(6, "fake engine: frames of delay between audio and its words")
    step_ms: float = setting(0.0, "fake engine: simulated cost of one step, in ms")
    pause_frames: int = setting(
        0, "fake engine: predict end of turn after this many silent frames (0: never)"
    )

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.delay_frames >= 0, "fake_delay_frames must be >= 0"
        yield self.step_ms >= 0, "fake_step_ms must be >= 0"
        yield self.pause_frames >= 0, "fake_pause_frames must be >= 0"
