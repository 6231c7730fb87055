"""benchmarks/gpu_engine.py --smoke: the GPU benchmark's code path on a tiny model on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.kyutai.helpers import KYUTAI_LIBS, SKIP_REASON

pytestmark = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)


def bench() -> object:
    return pytest.importorskip("benchmarks.gpu_engine", reason="benchmarks/ is not shipped here")


def test_smoke_run_prints_a_table_with_and_without_churn_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = bench().main  # type: ignore[attr-defined]
    out = tmp_path / "smoke.json"
    args = ["--smoke", "--batch-sizes", "1,3", "--steps", "30", "--churn", "40", "--json-out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "churn p99" in printed and "1b:" in printed and "2.6b:" in printed
    result = json.loads(out.read_text())
    assert result["smoke"] is True and [m["model"] for m in result["models"]] == ["1b", "2.6b"]
    for model in result["models"]:
        assert [r["batch"] for r in model["rows"]] == [1, 3]
        for row in model["rows"]:
            assert row["steady"]["admissions"] == 0 and row["churn"]["admissions"] > 0
            assert all(row[k]["step_p99_ms"] >= row[k]["step_p50_ms"] > 0 for k in ("steady", "churn"))


def test_churn_admits_streams_at_the_asked_rate() -> None:
    schedule = bench().churn_schedule(64, 125, 1.0)  # type: ignore[attr-defined]
    assert sum(len(s) for s in schedule) == 10  # 10 s of steps, one stream a second
    slots = [slot for s in schedule for slot in s]
    assert slots == list(range(10)), "slots take turns"
    assert len(bench().churn_schedule(128, 125, 1.0)[-1]) <= 1  # type: ignore[attr-defined]
