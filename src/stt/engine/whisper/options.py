"""The Whisper engine's options (flags `--whisper-*`, `--cpu-threads`), validated here once.

Kept apart from the engine so that reading settings never imports faster-whisper.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from stt.setting import Checked, setting

NATIVE_CONTEXT_S = 30.0
"""Audio Whisper's encoder was trained on; `context_s` may be shorter, never longer."""

AUTO_SLOTS = 16
"""Slot table when `--slots` is auto (not given): the most streams a measured capacity may
admit. Streams are admitted up to what the decoder serves within `latency_budget_s`
(`stt.engine.whisper.capacity`), which on 2 cores is a few."""


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
"""Temperatures a failed decode is retried at, in order (Whisper's and faster-whisper's)."""


class Decodes(enum.StrEnum):
    """Which decodes get a costlier search (`--whisper-beam`, `--whisper-fallback`)."""

    NONE = "none"
    FINAL = "final"
    """The final decode of each utterance (after a pause, a flush or a cut): it runs once and
    its words are the ones that stay."""
    SPARE = "spare"
    """Any decode that runs while no other decode waits for the decoder: a lone stream gets
    them all, a busy decoder none (its streams' latency is what greedy decodes give)."""
    ALL = "all"
    """Every decode."""

    def applies(self, *, final: bool, spare: bool) -> bool:
        """Whether a decode (`final` or partial, run while the decoder is otherwise idle or
        not) gets the search."""
        if self is Decodes.ALL:
            return True
        if self is Decodes.SPARE:
            return spare
        return final and self is Decodes.FINAL


@dataclass(frozen=True)
class WhisperOptions(Checked):
    """How the engine streams; the defaults suit a few streams on a small CPU."""

    prefix: ClassVar[str] = "whisper_"

    cpu_threads: int = setting(
        0, "whisper engine: CTranslate2 threads of the encoder (0: one per core)", name="cpu_threads"
    )
    decode_threads: int = setting(
        1,
        "whisper engine: CTranslate2 threads of generation, language detection and word alignment, "
        "on a second copy of the model with a replica per decode worker and one for expedited "
        "finals (0: the encoder's model and threads); on 2 cores one thread generated faster than "
        "two (see the README)",
    )
    decode_workers: int = setting(
        2,
        "whisper engine: decodes of different streams run at once (while one generates on its "
        "thread, the next encodes); the measured capacity charges each its share of the time",
    )
    interval_s: float = setting(
        0.5,
        "whisper engine: re-decode the current utterance after this much new audio (a busy decoder "
        "replaces a stream's waiting request by the newer one)",
    )
    latency_budget_s: float = setting(
        1.2,
        "whisper engine: longest a speaking stream waits between two decodes of its audio; "
        "`--slots auto` admits the streams whose decodes fit in it at the measured decoder cost "
        "(1.2 s: what held the latency targets in benchmarks/capacity.py on 2 cores)",
    )
    batch: int = setting(
        1,
        "whisper engine: most streams' windows decoded in one model call (1: one stream at a time; "
        "more did not pay on 2 cores, see the README)",
    )
    window_s: float = setting(
        10.0,
        "whisper engine: longest utterance decoded at once; longer speech is cut where a decode "
        "of the full window says, and goes on a few words back",
    )
    silence_s: float = setting(0.5, "whisper engine: silence that ends an utterance and sends its last words")
    context_s: float = setting(
        20.0,
        f"whisper engine: most audio the encoder sees, the window padded with silence "
        f"(Whisper's own: {NATIVE_CONTEXT_S:g})",
    )
    pad_s: float = setting(
        5.0,
        "whisper engine: silence after each window the encoder sees, up to `whisper_context_s` "
        "at most (0: every window padded to `whisper_context_s`); a short window costs less",
    )

    beam: Decodes = setting(
        Decodes.SPARE,
        "whisper engine: decodes that use beam search (`none`, `final`: each utterance's last, "
        "`spare`: any while no other decode waits, `all`); the others are greedy",
    )
    beam_size: int = setting(5, "whisper engine: beams of a beam-search decode")
    fallback: Decodes = setting(
        Decodes.SPARE,
        "whisper engine: decodes retried at a higher temperature when they look failed (a repetition "
        f"loop, or low confidence in speech), at {', '.join(f'{t:g}' for t in FALLBACK_TEMPERATURES)} "
        "in turn (`none`, `final`, `spare`, `all`, as for `--whisper-beam`)",
    )

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.cpu_threads >= 0, "cpu_threads must be >= 0"
        yield self.decode_threads >= 0, "whisper_decode_threads must be >= 0"
        yield self.decode_workers >= 1, "whisper_decode_workers must be >= 1"
        yield self.interval_s > 0, "whisper_interval_s must be > 0"
        yield (
            self.window_s >= 2 * self.interval_s,
            "whisper_window_s must be at least twice whisper_interval_s",
        )
        yield (
            self.latency_budget_s >= self.interval_s,
            "whisper_latency_budget_s must be at least whisper_interval_s",
        )
        yield self.batch >= 1, "whisper_batch must be >= 1"
        yield self.beam_size >= 2, "whisper_beam_size must be >= 2 (--whisper-beam none decodes greedily)"
        yield self.silence_s > 0, "whisper_silence_s must be > 0"
        yield self.pad_s == 0 or self.pad_s >= 1, "whisper_pad_s must be 0 or >= 1"
        yield (
            self.window_s + 2 <= self.context_s <= NATIVE_CONTEXT_S,
            f"whisper_context_s must be in whisper_window_s + 2 .. {NATIVE_CONTEXT_S:g}",
        )
