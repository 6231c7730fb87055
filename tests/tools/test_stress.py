"""The stress client against a real in-process server: it passes honest servers and catches
cross-wired ones."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stt.cli import main
from stt.engine.fake.engine import FakeEngine
from stt.engine.interface import StepInput, StepOutput
from stt.tools.client import Received, StreamResult
from stt.tools.samples import write_tone_set
from stt.tools.stress import StressOptions, check_stream, latencies, load_manifest, run_stress
from tests.helpers import live_server


class CrossWiredEngine(FakeEngine):
    """A broken batcher: each row gets the next row's words (rotated by one)."""

    def step(self, batch: StepInput) -> StepOutput:
        events = list(super().step(batch).events)
        return StepOutput(events[1:] + events[:1])


@pytest.fixture(scope="module")
def tone_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tones")
    write_tone_set(out, 25)
    return out / "manifest.jsonl"


def test_fifty_concurrent_streams_pass_against_the_fake_engine(tone_manifest: Path) -> None:
    samples = load_manifest(tone_manifest)
    with live_server(FakeEngine(slots=64, step_cost_s=0.002)) as server:
        options = StressOptions(server.ws_url, concurrency=50, streams=60, chunk_ms=240, wer_max=0.0)
        report = asyncio.run(run_stress(options, samples))
    assert report.passed, [s.failures for s in report.failed]
    assert len(report.streams) == 60 and report.corpus.wer == 0.0 and report.corpus.reference_words == 240
    assert all(s.first_word_s is not None and s.final_latency_s is not None for s in report.streams)
    assert {s.sample_id for s in report.streams} == {s.id for s in samples}  # cycled through all


def test_a_cross_wired_engine_fails_on_cross_talk(tone_manifest: Path) -> None:
    samples = load_manifest(tone_manifest)
    with live_server(CrossWiredEngine(slots=64, step_cost_s=0.005)) as server:
        options = StressOptions(server.ws_url, concurrency=50, realtime=True, end_marker="EOS")
        report = asyncio.run(run_stress(options, samples))
    assert not report.passed
    crossed = [s for s in report.streams if s.cross_talk]
    assert crossed, [s.transcript for s in report.streams]
    assert all(any("cross-talk" in f for f in s.failures) for s in crossed)


def test_refused_streams_are_reported_as_errors(tone_manifest: Path) -> None:
    samples = load_manifest(tone_manifest)
    with live_server(FakeEngine(slots=2, step_cost_s=0.01)) as server:
        options = StressOptions(server.ws_url, concurrency=5, realtime=True)
        report = asyncio.run(run_stress(options, samples))
    failed = report.failed
    assert len(failed) == 3  # two slots: the other three get over_capacity
    assert all(s.error is not None and "over_capacity" in s.error and not s.connected for s in failed)
    assert report.corpus.wer == 0.0  # refused streams are failures, not recognition errors


def _result(messages: list[tuple[dict[str, object], float]], sent: list[tuple[float, float]]) -> StreamResult:
    result = StreamResult(messages=[Received(m, t) for m, t in messages], sent=sent, close_code=1000)
    return result


def test_latencies_count_from_when_the_audio_was_sent() -> None:
    result = _result(
        [
            ({"type": "Ready"}, 0.0),
            ({"type": "Word", "text": "a", "start_s": 0.1, "end_s": 0.5}, 1.3),
            ({"type": "Final", "transcript": "a", "status": "complete"}, 2.25),
        ],
        sent=[(0.48, 0.5), (0.96, 1.0), (1.2, 2.0)],
    )
    first, final = latencies(result)
    assert first == pytest.approx(0.3)  # audio up to 0.5 s went out at 1.0 s
    assert final == pytest.approx(0.25)  # the end of stream went out at 2.0 s


def test_a_stream_fails_on_wer_missing_final_or_server_error() -> None:
    from stt.tools.stress import StreamReport

    report = StreamReport(0, "x", "en", "one two three four")
    result = _result([({"type": "Word", "text": "one", "start_s": 0, "end_s": 0.1}, 0.2)], [(0.5, 0.1)])
    result.close_code = 1011
    check_stream(report, result, {"one", "two", "three", "four"}, {"five"}, wer_max=0.25)
    assert report.wer == pytest.approx(0.75)
    assert not report.passed and len(report.failures) == 2  # WER and no Final

    report = StreamReport(0, "x", "en", "one")
    result = _result([({"type": "Error", "code": "too_fast", "message": "slow down"}, 0.1)], [])
    check_stream(report, result, {"one"}, set(), wer_max=None)
    assert report.error == "too_fast: slow down" and not report.passed


def test_stress_cli_prints_a_table_writes_json_and_sets_the_exit_code(
    tone_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    with live_server(FakeEngine(slots=16)) as server:
        rc = main(
            [
                "stress",
                "--url",
                server.ws_url,
                "--manifest",
                str(tone_manifest),
                "--concurrency",
                "10",
                "--eos",
                "--wer-max",
                "0",
                "--json-out",
                str(out),
            ]
        )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "PASS" in printed and "tones-0009" in printed and "EOS->Final ms" in printed
    data = json.loads(out.read_text())
    assert data["passed"] and data["streams_total"] == 10 and data["corpus_wer"] == 0.0
    assert data["final_latency_s"]["p99"] is not None

    with live_server(CrossWiredEngine(slots=16, step_cost_s=0.005)) as server:
        rc = main(
            [
                "stress",
                "--url",
                server.ws_url,
                "--manifest",
                str(tone_manifest),
                "--concurrency",
                "10",
                "--realtime",
                "--quiet",
            ]
        )
    assert rc == 1 and "FAIL" in capsys.readouterr().out


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "wav24k_path": "missing.wav", "ref_text": "x", "duration_s": 1})
    )
    with pytest.raises(ValueError, match="does not exist"):
        load_manifest(manifest)
    manifest.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="bad manifest row"):
        load_manifest(manifest)


def test_cross_talk_tolerance_is_configurable() -> None:
    from stt.tools.stress import StreamReport

    def check(minimum: int) -> StreamReport:
        report = StreamReport(0, "x", "en", "one two")
        result = _result(
            [
                ({"type": "Ready"}, 0.0),
                ({"type": "Final", "transcript": "one five", "status": "complete"}, 1.0),
            ],
            [(0.5, 0.1)],
        )
        check_stream(report, result, {"one", "two"}, {"five", "six"}, None, minimum)
        return report

    assert check(1).cross_talk == ["five"] and not check(1).passed
    assert check(2).cross_talk == ["five"] and check(2).passed  # reported, tolerated
    with pytest.raises(ValueError, match="cross_talk_min"):
        StressOptions("ws://x", cross_talk_min=0)


def test_a_clip_without_language_sends_no_hint(tmp_path: Path) -> None:
    """The shared silence clip says `"lang": "none"`: no Configure hint, not a bad language."""
    (tmp_path / "s.wav").write_bytes(b"")
    rows = [
        {"id": "s", "wav24k_path": "s.wav", "ref_text": "", "lang": lang, "duration_s": 1}
        for lang in ("none", "", None, "fr")
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [s.lang for s in load_manifest(manifest)] == [None, None, None, "fr"]


def test_ramp_spreads_the_first_starts(tone_manifest: Path) -> None:
    samples = load_manifest(tone_manifest)
    with live_server(FakeEngine(slots=8, step_cost_s=0.001)) as server:
        options = StressOptions(server.ws_url, concurrency=4, streams=4, ramp_s=0.6)
        report = asyncio.run(run_stress(options, samples))
    assert report.passed, [s.failures for s in report.failed]
    starts = [s.started_s for s in sorted(report.streams, key=lambda s: s.index)]
    assert starts == sorted(starts) and starts[-1] - starts[0] >= 0.45  # 3/4 of the ramp
    with pytest.raises(ValueError, match="ramp_s"):
        StressOptions("ws://x", ramp_s=-1)
