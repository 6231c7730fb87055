"""The Kyutai engine on a CUDA GPU: smoke, full-size batch independence, the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.engine.kyutai.helpers import Driver, build, clip


def test_the_tiny_checkpoint_streams_on_the_gpu_in_bfloat16(tiny_checkpoint: Path) -> None:
    engine = build(tiny_checkpoint, slots=4, device="cuda", dtype="bfloat16")
    assert engine._device.type == "cuda"
    engine.warmup()  # captures the CUDA graphs
    idle_steps = int(engine.slot_steps[3])
    alone = Driver(engine).alone(2, clip(0))[0]
    driver = Driver(engine)
    a, b = clip(0), clip(1)
    for i in range(len(a)):
        driver.step([(0, b[i], i == 0, False), (2, a[i], i == 0, i == len(a) - 1)])
    assert driver.tokens[2] == alone
    assert engine.slot_steps[3] == idle_steps, "a slot without frames must not step"


def test_full_size_slots_are_independent_on_the_gpu() -> None:
    from stt.engine.kyutai.engine import KyutaiEngine
    from stt.engine.kyutai.options import KyutaiOptions
    from stt.engine.kyutai.testing import random_model

    model = random_model(device="cuda", dtype="bfloat16")
    slots, frames = 16, 24
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, (slots, frames, 1920)).astype(np.float32)

    engine = KyutaiEngine(model, slots=slots, options=KyutaiOptions(compile=False))
    alone = Driver(engine).alone(5, audio[5])[0]
    engine.close()

    engine = KyutaiEngine(model, slots=slots, options=KyutaiOptions(compile=False))
    driver = Driver(engine)
    driver.alone(5, audio[9][:10])  # leaves state behind in slot 5 before the real stream
    for i in range(frames):
        rows = [(s, audio[s][i], i == 0, False) for s in range(slots) if s != 7 or i % 2 == 0]
        driver.step(rows)
    assert driver.tokens[5] == alone
    engine.close()


@pytest.mark.slow
def test_the_benchmark_measures_full_size_steps(tmp_path: Path) -> None:
    main = pytest.importorskip("benchmarks.gpu_engine", reason="benchmarks/ is not shipped here").main

    out = tmp_path / "gpu.json"
    args = ["--models", "1b", "--batch-sizes", "1,32", "--steps", "30", "--churn", "20", "--no-compile"]
    assert main([*args, "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())["models"][0]["rows"]
    assert [r["batch"] for r in rows][:1] == [1]
    for row in rows:
        if "error" not in row:
            assert row["steady"]["step_p50_ms"] > 0 and row["churn"]["admissions"] > 0


def test_a_step_uses_pinned_buffers_one_readback_and_tf32(tiny_checkpoint: Path) -> None:
    import torch

    engine = build(tiny_checkpoint, slots=4, device="cuda")
    assert torch.get_float32_matmul_precision() == "high", "Mimi's float32 matmuls without TF32"
    io = engine._io
    assert io._host_audio.is_pinned() and io._host_mask.is_pinned() and io._host_out.is_pinned()
    before = (engine.steps, io.downloads)
    Driver(engine).alone(1, clip(0)[:10])
    assert engine.steps - before[0] == io.downloads - before[1] == 10


def test_context_refreshes_keep_slots_independent_on_the_gpu(tiny_short_context_checkpoint: Path) -> None:
    """Refreshes reset one row of moshi's CUDA-graphed state between steps."""
    a, b = clip(10, 120), clip(11, 120)
    alone = Driver(build(tiny_short_context_checkpoint, slots=2, device="cuda")).alone(1, b)[0]
    engine = build(tiny_short_context_checkpoint, slots=2, device="cuda")
    engine.warmup()
    driver = Driver(engine)
    for i in range(len(a)):
        driver.step([(0, a[i], i == 0, False), (1, b[i], i == 0, False)])
    assert {slot for slot, _, _ in engine.refresh_log} == {0, 1}
    assert driver.tokens[1] == alone
