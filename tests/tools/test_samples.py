"""Sample preparation: every format to 24 kHz mono WAV, references, skips, broken files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import soundfile

from stt.audio import read_audio, write_wav
from stt.cli import main
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.tools.samples import (
    ReferenceEngine,
    engine_reference,
    ffmpeg_exe,
    prepare,
    read_manifest,
    tone_texts,
    write_tone_set,
)


def _ffmpeg(src: Path, dst: Path, *args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)


@pytest.fixture
def in_dir(tmp_path: Path) -> Path:
    """A wav with a sidecar, a 44.1 kHz stereo mp3 with a sidecar, a flac without one
    (tone-coded, so the fake engine can be its reference) and a broken file."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_wav(src / "hello.wav", encode_text("hello there", lead_frames=2))
    (src / "hello.txt").write_text("Hello there.\n")
    tone = tmp_path / "tone.wav"
    write_wav(tone, encode_text("second clip", lead_frames=2))
    _ffmpeg(tone, src / "sub" / "talk.mp3", "-ar", "44100", "-ac", "2")
    (src / "sub" / "talk.txt").write_text("second clip")
    (src / "sub" / "talk.lang").write_text("fr")
    write_wav(tone, encode_text("flac words", lead_frames=2))
    _ffmpeg(tone, src / "coded.flac")
    (src / "broken.m4a").write_bytes(b"this is not audio at all" * 10)
    return src


def test_prepare_converts_every_format_and_writes_the_manifest(in_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare(in_dir, out, reference=engine_reference("fake"), lang="en", progress=None)
    rows = {row["id"]: row for row in read_manifest(out / "manifest.jsonl")}
    assert set(rows) == {"hello", "sub-talk", "coded"}
    assert rows["hello"]["ref_text"] == "Hello there."
    assert rows["sub-talk"]["ref_text"] == "second clip" and rows["sub-talk"]["lang"] == "fr"
    assert rows["coded"]["ref_text"] == "flac words" and rows["coded"]["lang"] == "en"  # from the engine
    for row in rows.values():
        info = soundfile.info(str(out / row["wav24k_path"]))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert row["duration_s"] == pytest.approx(info.frames / 24000, abs=1e-3)
        assert len(row["sha256"]) == 64
    # the mp3 round trip keeps the tone code: the fake engine still reads its words
    talk = read_audio(out / rows["sub-talk"]["wav24k_path"])
    assert FakeEngine(slots=1).transcribe_batch([talk]) == ["second clip"]
    assert result.converted == 3
    assert [Path(s.source).name for s in result.skipped] == ["broken.m4a"]
    assert "ffmpeg cannot decode it" in result.skipped[0].reason


def test_rerun_skips_unchanged_files_and_redoes_changed_ones(in_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls: list[list[Path]] = []

    def build() -> ReferenceEngine:
        inner = engine_reference("fake")()

        def transcribe(paths: Sequence[Path], lang: str | None) -> list[str]:
            calls.append(list(paths))
            return inner(paths, lang)

        return transcribe

    prepare(in_dir, out, reference=build, progress=None)
    assert len(calls) == 1
    first = (out / "manifest.jsonl").read_text()
    again = prepare(in_dir, out, reference=build, progress=None)
    assert again.converted == 0 and len(calls) == 1
    assert (out / "manifest.jsonl").read_text() == first

    (in_dir / "hello.txt").write_text("hello again")  # a changed reference is picked up
    write_wav(in_dir / "coded.flac", encode_text("new words", lead_frames=2))  # as do changed contents
    third = prepare(in_dir, out, reference=build, progress=None)
    assert third.converted == 2 and len(calls) == 2
    rows = {row["id"]: row for row in read_manifest(out / "manifest.jsonl")}
    assert rows["hello"]["ref_text"] == "hello again" and rows["coded"]["ref_text"] == "new words"


def test_without_a_usable_reference_engine_those_files_are_skipped(in_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare(in_dir, out, reference=engine_reference("no-such-engine"), progress=None)
    assert {row.id for row in result.rows} == {"hello", "sub-talk"}
    reasons = {Path(s.source).name: s.reason for s in result.skipped}
    assert "no-such-engine" in reasons["coded.flac"] and "sidecar" in reasons["coded.flac"]
    assert not (out / "wav24k" / "coded.wav").exists()


def test_samples_cli(in_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert (
        main(["samples", "prepare", "--in-dir", str(in_dir), "--out-dir", str(out), "--engine", "fake"]) == 0
    )
    printed = capsys.readouterr().out
    assert "3 samples" in printed and "skipped" in printed and "broken.m4a" in printed
    assert main(["samples", "prepare", "--in-dir", str(tmp_path / "nope"), "--out-dir", str(out)]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_tone_sets_have_words_unique_to_each_clip(tmp_path: Path) -> None:
    texts = tone_texts(30, words_per_sample=5)
    words = [w for t in texts for w in t.split()]
    assert len(words) == len(set(words)) == 150 and all(w.isalpha() for w in words)
    rows = write_tone_set(tmp_path, 3)
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in manifest] == [r.id for r in rows]
    audio = [read_audio(tmp_path / r.wav24k_path) for r in rows]
    assert FakeEngine(slots=3).transcribe_batch(audio) == [r.ref_text for r in rows]


def test_an_output_directory_inside_the_input_is_not_read_back(in_dir: Path) -> None:
    out = in_dir / "samples"
    prepare(in_dir, out, reference=engine_reference("fake"), progress=None)
    again = prepare(in_dir, out, reference=engine_reference("fake"), progress=None)
    assert {row.id for row in again.rows} == {"hello", "sub-talk", "coded"} and again.converted == 0
