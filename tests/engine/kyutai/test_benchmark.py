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
    """Every asked batch size is measured whatever the machine's load: on CPU a step over
    80 ms (no real time) must not end the run as it does on a GPU."""
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
            assert row["steady"]["admissions"] == row["steady"]["flushes_acked"] == 0
            # every stream that left sent its flush row, and the engine acknowledged it
            assert row["churn"]["flushes_acked"] == row["churn"]["admissions"] > 0
            assert all(row[k]["step_p99_ms"] >= row[k]["step_p50_ms"] > 0 for k in ("steady", "churn"))


def test_a_failing_configuration_is_reported_and_the_others_are_still_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch size breaking (here: its engine refuses to step) must not hide the rest:
    the table and the JSON say which failed and why, and the exit status is 1."""
    module = bench()
    measure = module.measure  # type: ignore[attr-defined]

    def breaks_at_two(model: object, batch: int, *args: object) -> object:
        if batch == 2:
            raise RuntimeError("step failed")
        return measure(model, batch, *args)

    monkeypatch.setattr(module, "measure", breaks_at_two)
    out = tmp_path / "smoke.json"
    args = ["--smoke", "--models", "1b", "--batch-sizes", "1,2,3", "--steps", "5", "--json-out", str(out)]
    assert module.main(args) == 1  # type: ignore[attr-defined]
    captured = capsys.readouterr()
    assert "2 failed: RuntimeError: step failed" in captured.out
    assert "failed: 1b batch 2" in captured.err
    rows = json.loads(out.read_text())["models"][0]["rows"]
    assert [r["batch"] for r in rows] == [1, 2, 3]
    assert rows[1] == {"batch": 2, "error": "RuntimeError: step failed"}
    assert all(r["steady"]["step_p50_ms"] > 0 for r in (rows[0], rows[2]))


def test_churn_admits_streams_at_the_asked_rate() -> None:
    schedule = bench().churn_schedule(64, 125, 1.0)  # type: ignore[attr-defined]
    assert sum(len(s) for s in schedule) == 10  # 10 s of steps, one stream a second
    slots = [slot for s in schedule for slot in s]
    assert slots == list(range(10)), "slots take turns"
    assert len(bench().churn_schedule(128, 125, 1.0)[-1]) <= 1  # type: ignore[attr-defined]
