"""benchmarks/cpu_engine.py end to end against a running server, on a tone-coded manifest.

The fake engine stands in for Whisper (tones instead of speech), so the measuring code
(streaming, WER, latencies, table, JSON) runs in a second instead of minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stt.audio import write_wav
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from tests.helpers import live_server


def test_benchmark_scores_a_manifest_through_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = pytest.importorskip("benchmarks.cpu_engine", reason="benchmarks/ is not shipped here")
    rows = []
    for i, (lang, voice, text) in enumerate(
        [("en", "pico:en-US", "hello world"), ("fr", "espeak-ng:fr", "bonjour")]
    ):
        audio = encode_text(text)
        write_wav(tmp_path / f"{i}.wav", audio)
        rows.append(
            {
                "id": f"c{i}",
                "lang": lang,
                "voice": voice,
                "wav24k_path": f"{i}.wav",
                "ref_text": text,
                "duration_s": audio.size / 24_000,
            }
        )
    rows.append({"id": "quiet", "lang": "en", "wav24k_path": "0.wav", "ref_text": "", "duration_s": 1.0})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "bench.json"
    with live_server(FakeEngine(slots=4, delay_frames=2)) as server:
        code = bench.main(
            [
                "--manifest",
                str(manifest),
                "--url",
                server.ws_url,
                "--concurrency",
                "2",
                "--json-out",
                str(out),
            ]
        )
    assert code == 0
    assert "first word" in capsys.readouterr().out
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert sorted((r["mode"], r["clip"]) for r in runs) == [
        ("fast", "c0"),
        ("fast", "c1"),
        ("realtime-x2", "c0"),
        ("realtime-x2", "c1"),
    ]  # the clip without a reference is not scored
    assert all(r["wer"] == 0 and r["close_code"] == 1000 for r in runs)
    assert all(r["first_word_latency_s"] is not None and r["final_latency_s"] >= 0 for r in runs)
    groups = {(s["mode"], s["lang"], s["voice"]) for s in report["summary"]}
    assert {
        ("realtime-x2", "en", "pico"),
        ("realtime-x2", "fr", "espeak-ng"),
        ("fast", "all", "all"),
    } <= groups


def test_search_choices_are_checked_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    bench = pytest.importorskip("benchmarks.cpu_engine", reason="benchmarks/ is not shipped here")
    with pytest.raises(SystemExit):
        bench.main(["--search", "final", "--url", "ws://127.0.0.1:9/v1/stream"])
    assert "BEAM/FALLBACK" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--search", "final/none", "--url", "ws://127.0.0.1:9/v1/stream"])
    assert "cannot be used with --url" in capsys.readouterr().err
