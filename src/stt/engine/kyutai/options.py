"""The Kyutai engine's options (flags `--kyutai-*`, `--device`, `--dtype`).

Kept apart from the engine so that reading settings never imports torch or moshi.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from stt.setting import Checked, setting

DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class KyutaiOptions(Checked):
    prefix: ClassVar[str] = "kyutai_"

    device: str = setting("auto", "kyutai engine: torch device: auto, cpu, cuda, cuda:N", name="device")
    dtype: str = setting(
        "auto",
        "kyutai engine: model dtype: auto (bfloat16 on GPU, float32 on CPU), bfloat16, float16, float32",
        name="dtype",
    )
    pause_threshold: float = setting(
        0.5,
        "kyutai engine: send `Pause` when the pause head's end-of-turn probability reaches this "
        "(checkpoints with pause heads; 0: off)",
    )
    context_s: float = setting(
        0.0,
        "kyutai engine: restart each stream's LM context before it holds this much audio, at a "
        "pause when one comes (0: the checkpoint's own window, 60 s for stt-1b-en_fr)",
    )
    cuda_graphs: bool = setting(True, "kyutai engine: replay each step as a CUDA graph (CUDA only)")
    compile: bool = setting(True, "kyutai engine: `torch.compile` moshi's fused layers (CUDA only)")

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield (
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"),
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        yield self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"
        yield 0 <= self.pause_threshold <= 1, "kyutai_pause_threshold must be in 0..1"
        yield self.context_s >= 0, "kyutai_context_s must be >= 0"
