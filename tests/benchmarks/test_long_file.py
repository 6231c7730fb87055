"""benchmarks/long_file.py end to end on a short file with the fake engine (seconds, not minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_long_file_benchmark_reports_rtf_memory_and_an_exact_transcript(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = pytest.importorskip("benchmarks.long_file", reason="benchmarks/ is not shipped here")
    out = tmp_path / "long.json"
    assert bench.main(["--engines", "fake", "--minutes", "0.5", "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["engine"] == "fake" and row["accuracy"] == "exact", row
    assert row["audio_s"] >= 30 and row["words"] > 20
    assert row["rtf"] == pytest.approx(row["wall_s"] / row["audio_s"], abs=1e-4)
    assert row["first_word_s"] is not None and row["first_word_s"] < row["wall_s"]
    assert row["peak_rss_after_mib"] >= row["peak_rss_before_mib"] > 0
    assert report["cpu_model"] and len(report["load_avg_before"]) == 3
    printed = capsys.readouterr().out
    assert "RTF" in printed and "fake" in printed and "load average" in printed
