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
    assert main(["--batch-sizes", "1,32", "--steps", "10", "--no-compile", "--json-out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["batch"] for r in result["rows"]][:1] == [1]
    assert all(r["step_p50_ms"] > 0 for r in result["rows"] if "error" not in r)
