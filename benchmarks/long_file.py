"""Long-file benchmark: how fast `POST /v1/audio/transcriptions` gets through a long upload.

For each engine, writes an N-minute mono PCM16 WAV file (16 kHz for Whisper, the common upload
rate, so the server also resamples; 24 kHz for the fake engine, whose tones reach above
8 kHz), starts `stt serve --engine E` in its own process, uploads the file with the official
`openai` SDK (`stream=True`) and reports:

- RTF: wall time from the start of the upload to `transcript.text.done` over the audio's
  duration (below 1: faster than real time);
- first word: seconds from the start of the upload to the first `transcript.text.delta`;
- the server's CPU seconds per audio second (user + system; less load-dependent than RTF on
  a shared machine);
- the server's peak resident memory before and after the upload (VmHWM): the file is decoded
  a block at a time, so the peak grows by far less than the decoded file (4 bytes a sample);
- accuracy: the fake engine's transcript must equal the tone-coded text exactly; Whisper's
  WER against the concatenated references of the shared clips it is made of.

Prints a table and writes JSON. The machine may be shared: the CPU model and the load
average before and after are reported with the figures.

    python benchmarks/long_file.py                              # fake and whisper, 30 minutes
    python benchmarks/long_file.py --engines fake --minutes 5 --json-out long.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from openai import OpenAI, omit

from stt.audio import read_audio, resample
from stt.constants import FRAME_SAMPLES, SAMPLE_RATE
from stt.engine.fake.tones import ALPHABET, encode_text
from stt.tools.samples import read_manifest
from stt.tools.serve_process import serve_process
from stt.tools.wer import word_errors

if __package__ in (None, ""):  # run as a script: its sibling modules are `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import DEFAULT_MANIFEST, cpu_model

FILE_RATE = {"fake": SAMPLE_RATE}
"""Sample rate of each engine's file; others get 16 kHz."""
GAP_S = 13 * FRAME_SAMPLES / SAMPLE_RATE
"""Pause after each phrase: 1.04 s, whole 80 ms frames (the tone code is decoded frame by frame)."""


@dataclass
class Result:
    engine: str
    audio_s: float
    file_mb: float
    wall_s: float
    rtf: float
    first_word_s: float | None
    cpu_s: float
    cpu_per_audio_s: float
    peak_rss_before_mib: float
    peak_rss_after_mib: float
    words: int
    accuracy: str
    """`exact` / `differs` (fake) or `WER 0.xx` (whisper)."""


def _pieces_fake(seconds: float, seed: int = 7) -> Iterator[tuple[np.ndarray, str]]:
    """Tone-coded phrases of random words with a pause after each, until `seconds` are filled."""
    rng = random.Random(seed)
    made = 0.0
    while made < seconds:
        words = [
            "".join(rng.choice(ALPHABET[:26]) for _ in range(rng.randint(2, 7)))
            for _ in range(rng.randint(3, 9))
        ]
        audio = np.concatenate(
            [encode_text(" ".join(words)), np.zeros(round(GAP_S * SAMPLE_RATE), np.float32)]
        )
        made += audio.size / SAMPLE_RATE
        yield audio, " ".join(words)


def _pieces_speech(seconds: float, manifest: Path) -> Iterator[tuple[np.ndarray, str]]:
    """The shared clips with Pico voices (English and French), in turn, a pause after each."""
    rows = [
        r for r in read_manifest(manifest) if str(r.get("voice", "")).startswith("pico") and r["ref_text"]
    ]
    if not rows:
        raise SystemExit(f"no Pico clips with text in {manifest}")
    clips = [(read_audio(manifest.parent / r["wav24k_path"]), str(r["ref_text"])) for r in rows]
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), np.float32)
    made, i = 0.0, 0
    while made < seconds:
        audio, text = clips[i % len(clips)]
        piece = np.concatenate([audio, gap])
        made += piece.size / SAMPLE_RATE
        i += 1
        yield piece, text


def write_file(path: Path, pieces: Iterator[tuple[np.ndarray, str]], rate: int) -> tuple[float, str]:
    """Write the pieces at `rate`, piece by piece (never the whole file in memory);
    return (duration in s, reference text)."""
    texts: list[str] = []
    frames = 0
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16", format="WAV") as out:
        for audio, text in pieces:
            block = resample(audio, SAMPLE_RATE, rate)
            out.write(block)
            frames += block.size
            texts.append(text)
    return frames / rate, " ".join(texts)


def _status(pid: int, field: str) -> float:
    """A /proc/PID/status memory field, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_engine(engine: str, minutes: float, manifest: Path, folder: Path) -> Result:
    path = folder / f"{engine}.wav"
    pieces = _pieces_fake(minutes * 60) if engine == "fake" else _pieces_speech(minutes * 60, manifest)
    audio_s, reference = write_file(path, pieces, FILE_RATE.get(engine, 16_000))
    size = path.stat().st_size
    flags = ["--engine", engine, "--max-upload-bytes", str(size + (1 << 20))]
    with serve_process(flags, ready_timeout_s=300) as served:
        pid = served.proc.pid
        client = OpenAI(
            base_url=f"http://127.0.0.1:{served.port}/v1", api_key="-", max_retries=0, timeout=3600
        )
        rss_before, cpu_before = _status(pid, "VmHWM"), _cpu_s(pid)
        deltas: list[str] = []
        first: float | None = None
        text = ""
        started = time.perf_counter()
        language = None if engine == "fake" else "en"
        with (
            path.open("rb") as f,
            client.audio.transcriptions.create(
                model="any", file=(path.name, f), stream=True, language=language or omit
            ) as events,
        ):
            for event in events:
                if event.type == "transcript.text.delta":
                    if first is None:
                        first = time.perf_counter() - started
                    deltas.append(event.delta)
                elif event.type == "transcript.text.done":
                    text = event.text
        wall = time.perf_counter() - started
        cpu = _cpu_s(pid) - cpu_before
        rss_after = _status(pid, "VmHWM")
    if engine == "fake":
        accuracy = "exact" if text == reference else "differs"
    else:
        accuracy = f"WER {word_errors(reference, text, 'en').wer:.3f}"
    return Result(
        engine=engine,
        audio_s=round(audio_s, 1),
        file_mb=round(size / 1e6, 1),
        wall_s=round(wall, 3),
        rtf=round(wall / audio_s, 4),
        first_word_s=None if first is None else round(first, 2),
        cpu_s=round(cpu, 1),
        cpu_per_audio_s=round(cpu / audio_s, 4),
        peak_rss_before_mib=round(rss_before, 1),
        peak_rss_after_mib=round(rss_after, 1),
        words=len(text.split()),
        accuracy=accuracy,
    )


def print_table(results: Sequence[Result]) -> None:
    print(
        f"{'engine':8} {'audio':>8} {'file':>7} {'wall':>8} {'RTF':>7} {'1st word':>8} {'CPU/s':>7} "
        f"{'peak RSS MiB':>17} {'words':>6}  accuracy"
    )
    for r in results:
        first = "-" if r.first_word_s is None else f"{r.first_word_s:.2f}s"
        rss = f"{r.peak_rss_before_mib:.0f} -> {r.peak_rss_after_mib:.0f}"
        print(
            f"{r.engine:8} {r.audio_s / 60:7.1f}m {r.file_mb:6.1f}M {r.wall_s:7.1f}s {r.rtf:7.4f} {first:>8} "
            f"{r.cpu_per_audio_s:7.4f} {rss:>17} {r.words:6d}  {r.accuracy}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", default="fake,whisper", help="comma-separated engines to measure")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the file")
    parser.add_argument(
        "--manifest", type=Path, default=DEFAULT_MANIFEST, help="clips whisper's file is made of"
    )
    parser.add_argument("--json-out", type=Path, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="stt-long-") as folder:
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            results.append(run_engine(engine, args.minutes, args.manifest, Path(folder)))
    report: dict[str, Any] = {
        "results": [asdict(r) for r in results],
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(
            ["python", "benchmarks/long_file.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    print_table(results)
    print(
        f"CPU: {report['cpu_model']} x{report['cpus']}; load average (1/5/15 min) "
        f"before {report['load_avg_before']}, after {report['load_avg_after']}"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
