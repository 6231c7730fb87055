"""benchmarks/gpu_engine.py --smoke: the GPU benchmark's code path on a tiny model on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.conftest import KYUTAI_LIBS, SKIP_REASON

pytestmark = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)


def test_smoke_run_prints_a_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = pytest.importorskip("benchmarks.gpu_engine", reason="benchmarks/ is not shipped here").main

    out = tmp_path / "smoke.json"
    assert main(["--smoke", "--batch-sizes", "1,3", "--steps", "3", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "p50 ms" in printed and "real-time streams on one cpu" in printed
    result = json.loads(out.read_text())
    assert result["smoke"] is True and [r["batch"] for r in result["rows"]] == [1, 3]
    assert all(r["step_p99_ms"] >= r["step_p50_ms"] > 0 for r in result["rows"])
