"""benchmarks/flush_stall.py's measuring code, on the fake engine and tone-coded clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stt.audio import write_wav
from stt.engine.fake.tones import encode_text


def test_the_worker_measures_steps_and_the_latencies_of_running_streams(tmp_path: Path) -> None:
    bench = pytest.importorskip("benchmarks.flush_stall", reason="benchmarks/ is not shipped here")
    rows = []
    for i, text in enumerate(["hello world again and again", "bonjour tout le monde encore"]):
        write_wav(tmp_path / f"{i}.wav", encode_text(text))
        rows.append({"id": str(i), "lang": "en", "wav24k_path": f"{i}.wav"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = ["--engine", "fake", "--seconds", "1", "--streams", "2", "--stagger-s", "0.1"]
    flags += ["--clips-per-stream", "1"]
    args = bench.build_parser().parse_args([*flags, "--manifest", str(tmp_path / "manifest.jsonl")])
    result = bench._worker(args)
    assert result["streams"] >= 2 and result["failed"] == 0
    assert result["steps"] > 0 and result["step_p99_ms"] is not None
    assert result["first_word_p50_ms"] is not None, "the fake's words come before each stream's end"
    assert result["final_p50_ms"] is not None
    assert Path(result["stt"]) == Path(bench.__file__).resolve().parents[1] / "src"
