"""Sample sets: any audio -> 24 kHz mono PCM16 WAV + reference text + `manifest.jsonl`.

The stress client and benchmarks need audio with a known transcript in the wire format.
`prepare` converts every audio file under a directory with ffmpeg (the static binary that
the imageio-ffmpeg wheel ships, so no system package is needed), takes each reference from
a sidecar `.txt` or else from a reference engine, and skips files whose content has not
changed since the last run. A file that cannot be decoded is reported and skipped. `tones`
writes a tone-coded set that the fake engine transcribes exactly.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import soundfile

from stt.constants import SAMPLE_RATE

AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", ".webm", ".mp4")
MANIFEST = "manifest.jsonl"
WAV_DIR = "wav24k"
_FFMPEG_TIMEOUT_S = 600


class SamplesError(RuntimeError):
    """Preparing samples cannot start (no ffmpeg, no input); the message says what to do."""


@dataclass(frozen=True)
class ManifestRow:
    """One line of manifest.jsonl; `wav24k_path` is relative to the manifest's directory."""

    id: str
    wav24k_path: str
    ref_text: str
    lang: str | None
    sha256: str
    duration_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class PrepareResult:
    rows: list[ManifestRow]
    converted: int
    """Files converted in this run (the rest were unchanged and reused)."""
    skipped: list[Skipped]
    manifest: Path


ReferenceEngine = Callable[[Sequence[Path], str | None], list[str]]
"""Transcribes 24 kHz WAV files in a language (None: the engine decides), one text each; built
only when a sidecar is missing."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary of the imageio-ffmpeg wheel (or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]  # ships no type information
    except ImportError:
        raise SamplesError(
            "ffmpeg is needed to convert audio: install the pinned imageio-ffmpeg (`make setup`)"
        ) from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise SamplesError(f"no ffmpeg binary found: {exc}") from None


def convert(ffmpeg: str, source: Path, target: Path) -> None:
    """Decode any audio to 24 kHz mono PCM16 WAV; ValueError with ffmpeg's reason on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.wav")
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source)]
    command += ["-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(partial)]
    done = subprocess.run(command, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    if done.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit code {done.returncode}"
        raise ValueError(f"ffmpeg cannot decode it: {why}")
    info = soundfile.info(str(partial))
    if info.frames == 0:
        partial.unlink(missing_ok=True)
        raise ValueError("no audio samples")
    partial.replace(target)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_audio(in_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under `in_dir`, except under `exclude` (an output directory inside it)."""
    skip = exclude.resolve() if exclude is not None else None
    return sorted(
        p
        for p in in_dir.rglob("*")
        if p.is_file()
        and p.suffix.lower() in AUDIO_SUFFIXES
        and (skip is None or not p.resolve().is_relative_to(skip))
    )


def sample_ids(sources: Sequence[Path], in_dir: Path) -> list[str]:
    """Stable ids from relative paths (`a/b.mp3` -> `a-b`); a clash keeps the extension."""
    stems = [s.relative_to(in_dir).with_suffix("").as_posix().replace("/", "-") for s in sources]
    return [
        f"{stem}-{src.suffix.lower().lstrip('.')}" if stems.count(stem) > 1 else stem
        for stem, src in zip(stems, sources, strict=True)
    ]


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a manifest.jsonl (blank lines ignored)."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
    return rows


def _sidecar(source: Path, suffix: str) -> str | None:
    path = source.with_suffix(suffix)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


@dataclass
class _Job:
    id: str
    source: Path
    sha256: str
    ref_text: str | None
    lang: str | None


def prepare(
    in_dir: Path,
    out_dir: Path,
    *,
    reference: Callable[[], ReferenceEngine] | None = None,
    lang: str | None = None,
    workers: int = 4,
    progress: TextIO | None = sys.stderr,
) -> PrepareResult:
    """Convert every audio file under `in_dir` into `out_dir` and write its manifest.

    Reference text: `<name>.txt` beside the audio, else `reference()` (built once, only if
    needed); language: `<name>.lang` beside the audio, else `lang`. Files whose sha256
    matches the existing manifest's row are not converted or transcribed again.
    """
    if not in_dir.is_dir():
        raise SamplesError(f"input directory {in_dir} does not exist")
    sources = find_audio(in_dir, exclude=out_dir)
    if not sources:
        raise SamplesError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {in_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    previous = {row["id"]: row for row in read_manifest(manifest)} if manifest.is_file() else {}

    reused: dict[str, ManifestRow] = {}
    jobs: list[_Job] = []
    for sample_id, source in zip(sample_ids(sources, in_dir), sources, strict=True):
        job = _Job(
            sample_id, source, sha256_of(source), _sidecar(source, ".txt"), _sidecar(source, ".lang") or lang
        )
        old = previous.get(sample_id)
        if (
            old is not None
            and old.get("sha256") == job.sha256
            and (out_dir / str(old.get("wav24k_path"))).is_file()
            and (job.ref_text is None or job.ref_text == old.get("ref_text"))
            and (job.lang is None or job.lang == old.get("lang"))
        ):
            reused[sample_id] = ManifestRow(**{k: old[k] for k in ManifestRow.__dataclass_fields__})
        else:
            jobs.append(job)

    ffmpeg = ffmpeg_exe() if jobs else ""
    skipped: list[Skipped] = []
    converted: dict[str, tuple[_Job, Path]] = {}
    bar = _Progress(len(jobs), "converting", progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(convert, ffmpeg, j.source, out_dir / WAV_DIR / f"{j.id}.wav"): j for j in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                future.result()
                converted[job.id] = (job, out_dir / WAV_DIR / f"{job.id}.wav")
            except (ValueError, OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped.append(Skipped(str(job.source), str(exc)))
            bar.advance()
    bar.close()

    need_text = [jid for jid, (job, _) in converted.items() if job.ref_text is None]
    if need_text:
        _transcribe_missing(converted, need_text, reference, skipped, progress)

    rows: list[ManifestRow] = []
    for sample_id in sample_ids(sources, in_dir):
        if sample_id in reused:
            rows.append(reused[sample_id])
        elif sample_id in converted:
            job, wav = converted[sample_id]
            assert job.ref_text is not None
            duration = soundfile.info(str(wav)).frames / SAMPLE_RATE
            rel = wav.relative_to(out_dir).as_posix()
            rows.append(ManifestRow(job.id, rel, job.ref_text, job.lang, job.sha256, round(duration, 3)))
    tmp = manifest.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    tmp.replace(manifest)
    return PrepareResult(rows, len(rows) - len(reused), skipped, manifest)


def _transcribe_missing(
    converted: dict[str, tuple[_Job, Path]],
    need_text: list[str],
    reference: Callable[[], ReferenceEngine] | None,
    skipped: list[Skipped],
    progress: TextIO | None,
) -> None:
    """Fill in `ref_text` from the reference engine; without one, those files are skipped."""
    engine: ReferenceEngine | None = None
    why = "no sidecar .txt and no reference engine"
    if reference is not None:
        try:
            engine = reference()
        except (RuntimeError, ValueError, ImportError) as exc:
            why = f"no sidecar .txt and the reference engine cannot load: {exc}"
    if engine is None:
        for jid in need_text:
            job, wav = converted.pop(jid)
            wav.unlink(missing_ok=True)
            skipped.append(Skipped(str(job.source), why))
        return
    bar = _Progress(len(need_text), "transcribing", progress)
    for jid in need_text:  # one at a time: the bar moves, and a failure costs one file
        job, wav = converted[jid]
        try:
            job.ref_text = engine([wav], job.lang)[0].strip()
        except (RuntimeError, ValueError) as exc:
            converted.pop(jid)
            skipped.append(Skipped(str(job.source), f"reference engine failed: {exc}"))
        bar.advance()
    bar.close()


def engine_reference(name: str) -> Callable[[], ReferenceEngine]:
    """A reference transcriber from the engine registry (other settings such as STT_MODEL and
    STT_DEVICE from the environment), built on first use."""

    def build() -> ReferenceEngine:
        from stt.audio import read_audio
        from stt.config import Settings
        from stt.engine.base import transcribe_texts
        from stt.engine.interface import StreamOptions
        from stt.engine.registry import build_engine

        engine = build_engine(Settings.from_env(engine=name))

        def transcribe(paths: Sequence[Path], lang: str | None) -> list[str]:
            return transcribe_texts(engine, [read_audio(p) for p in paths], StreamOptions(language=lang))

        return transcribe

    return build


# -- tone-coded sets -----------------------------------------------------------------------

_TONE_WORDS = ("red", "green", "blue", "gold", "mint", "jade", "plum", "rose")


def _letters(n: int, width: int = 3) -> str:
    """`n` in base 26 with letters: digits would be spelled out by the WER normaliser."""
    out = ""
    for _ in range(width):
        n, digit = divmod(n, 26)
        out = chr(ord("a") + digit) + out
    return out


def tone_texts(count: int, words_per_sample: int = 4) -> list[str]:
    """Texts whose words occur in exactly one sample, so any cross-talk is visible."""
    if not 1 <= words_per_sample <= len(_TONE_WORDS) or not 0 <= count <= 26**3:
        raise ValueError(f"at most {len(_TONE_WORDS)} words per sample and {26**3} samples")
    return [" ".join(f"{_TONE_WORDS[k]}{_letters(i)}" for k in range(words_per_sample)) for i in range(count)]


def write_tone_set(out_dir: Path, count: int, words_per_sample: int = 4) -> list[ManifestRow]:
    """A manifest of tone-coded clips that the fake engine transcribes exactly."""
    from stt.audio import float32_to_pcm16, write_wav
    from stt.engine.fake.tones import encode_text

    rows = []
    (out_dir / WAV_DIR).mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(tone_texts(count, words_per_sample)):
        audio = encode_text(text, lead_frames=2)
        rel = f"{WAV_DIR}/tones-{i:04d}.wav"
        write_wav(out_dir / rel, audio)
        digest = hashlib.sha256(float32_to_pcm16(audio)).hexdigest()
        rows.append(
            ManifestRow(f"tones-{i:04d}", rel, text, None, digest, round(audio.size / SAMPLE_RATE, 3))
        )
    (out_dir / MANIFEST).write_text("".join(r.to_json() + "\n" for r in rows), encoding="utf-8")
    return rows


class _Progress:
    """A one-line progress bar on stderr (a terminal) or nothing (pipes and logs)."""

    def __init__(self, total: int, label: str, out: TextIO | None) -> None:
        self._total = total
        self._done = 0
        self._label = label
        self._out = out if out is not None and total and out.isatty() else None
        self._started = time.monotonic()
        self._draw()

    def advance(self) -> None:
        self._done += 1
        self._draw()

    def _draw(self) -> None:
        if self._out is None:
            return
        width = 30
        filled = width * self._done // max(1, self._total)
        elapsed = time.monotonic() - self._started
        bar = "#" * filled + "." * (width - filled)
        self._out.write(f"\r{self._label} [{bar}] {self._done}/{self._total} {elapsed:.0f}s")
        self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.write("\n")
            self._out.flush()


def summary_lines(result: PrepareResult) -> Iterable[str]:
    reused = len(result.rows) - result.converted
    yield (
        f"{len(result.rows)} samples in {result.manifest} ({result.converted} converted, "
        f"{reused} unchanged, {len(result.skipped)} skipped)"
    )
    for skip in result.skipped:
        yield f"skipped {skip.source}: {skip.reason}"
