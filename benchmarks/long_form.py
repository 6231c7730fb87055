"""Long-form benchmark: one long English stream through `stt serve --engine whisper`.

Speech longer than the engine's window (10 s) is cut into windows; a cut once doubled a
word ("for the first time time") and lost the capital of the next sentence. This streams
`--minutes` (default 10) of the shared samples joined end to end: mostly 0.1 s apart, below
the silence that ends an utterance, so speech runs on across many cuts; now and then 1 s
apart, a pause that ends the utterance. The known texts of the clips, joined the same way,
are the reference. Checks, against that reference:

- nothing doubled: no inserted run of words (one or more) that repeats the words just
  before or after it ("time time", "the lazy dog the lazy dog");
- nothing lost: no run of two or more reference words missing (single deletions are
  ordinary recognition errors and are counted in the WER);
- word times never go backwards and stay within the audio;
- a word after a full stop starts with a capital.

Prints a table, writes JSON (`--json-out`), exits 1 when a check fails. Real time by
default (a live stream); `--fast` sends as fast as the server takes it, so the decoder
falls behind and the engine's "hard" cuts (no agreed word to restart from) are exercised.

    python benchmarks/long_form.py                        # 10 minutes, real time
    python benchmarks/long_form.py --minutes 2 --fast     # a quicker check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import numpy.typing as npt

from stt.audio import read_audio
from stt.constants import SAMPLE_RATE
from stt.tools.client import StreamResult, stream_audio
from stt.tools.samples import read_manifest
from stt.tools.serve_process import serve_process
from stt.tools.wer import normalize, word_errors

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "samples" / "manifest.jsonl"
RUN_ON_GAP_S = 0.1
PAUSE_GAP_S = 1.0
PAUSE_EVERY = 6
"""About one clip in this many is followed by a pause rather than running on."""


@dataclass(frozen=True)
class Segment:
    clip: str
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Report:
    audio_s: float
    segments: int
    pauses: int
    reference_words: int
    hypothesis_words: int
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    doubled: list[str]
    lost_runs: list[str]
    times_in_order: bool
    uncapitalised: list[str]
    first_word_latency_s: float | None
    word_latency_p50_s: float | None
    word_latency_p95_s: float | None
    final_latency_s: float | None
    server_cpu_s: float | None
    wall_s: float

    @property
    def passed(self) -> bool:
        return not self.doubled and not self.lost_runs and self.times_in_order and not self.uncapitalised


def trimmed(audio: npt.NDArray[np.float32], keep_s: float = 0.1) -> npt.NDArray[np.float32]:
    """A clip without its leading and trailing silence (but `keep_s` of it)."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if not loud.size:
        return audio[:0]
    keep = int(keep_s * SAMPLE_RATE)
    return audio[max(0, loud[0] - keep) : loud[-1] + keep]


def build_stream(
    manifest: Path, minutes: float, seed: int
) -> tuple[npt.NDArray[np.float32], list[Segment], int]:
    """English clips in a shuffled order, repeated until `minutes`: (audio, segments, pauses)."""
    rows = [r for r in read_manifest(manifest) if r.get("lang") == "en" and r.get("ref_text")]
    if not rows:
        raise SystemExit(f"no English clips with text in {manifest}")
    clips = {r["id"]: (trimmed(read_audio(manifest.parent / r["wav24k_path"])), r["ref_text"]) for r in rows}
    rng = random.Random(seed)
    parts: list[npt.NDArray[np.float32]] = []
    segments: list[Segment] = []
    at, pauses = 0, 0
    while at < minutes * 60 * SAMPLE_RATE:
        order = list(clips)
        rng.shuffle(order)
        for clip_id in order:
            audio, text = clips[clip_id]
            segments.append(Segment(clip_id, at / SAMPLE_RATE, (at + audio.size) / SAMPLE_RATE, text))
            pause = rng.randrange(PAUSE_EVERY) == 0
            pauses += pause
            gap = np.zeros(int((PAUSE_GAP_S if pause else RUN_ON_GAP_S) * SAMPLE_RATE), dtype=np.float32)
            parts += [audio, gap]
            at += audio.size + gap.size
    return np.concatenate(parts), segments, pauses


def repeats(hyp: Sequence[str], start: int, end: int) -> list[str]:
    """The runs in the inserted words `hyp[start:end]` that repeat the words just before or
    just after them (each shown in context): a word or phrase sent twice."""
    found = []
    j = start
    while j < end:
        for n in range(end - j, 0, -1):
            run = list(hyp[j : j + n])
            if run == list(hyp[j - n : j]) or run == list(hyp[j + n : j + 2 * n]):
                found.append(" ".join(hyp[max(0, j - n - 2) : j + 2 * n + 2]))
                j += n
                break
        else:
            j += 1
    return found


def check(
    result: StreamResult, segments: Sequence[Segment], audio_s: float, pauses: int, wall_s: float
) -> Report:
    words = result.words
    reference = " ".join(s.text for s in segments)
    transcript = " ".join(w["text"] for w in words)
    stats = word_errors(reference, transcript, "en")
    ref, hyp = normalize(reference, "en").split(), normalize(transcript, "en").split()
    doubled: list[str] = []
    lost: list[str] = []
    if ref and hyp:
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        for chunk in out.alignments[0]:
            if chunk.type == "insert":
                doubled += repeats(hyp, chunk.hyp_start_idx, chunk.hyp_end_idx)
            elif chunk.type == "delete" and chunk.ref_end_idx - chunk.ref_start_idx >= 2:
                lost.append(
                    " ".join(ref[chunk.ref_start_idx : chunk.ref_end_idx])
                    + f"  (after: {' '.join(ref[max(0, chunk.ref_start_idx - 4) : chunk.ref_start_idx])})"
                )
    in_order = all(
        w["start_s"] <= w["end_s"] <= audio_s + 0.1
        and (i == 0 or w["start_s"] >= words[i - 1]["end_s"] - 1e-3)
        for i, w in enumerate(words)
    )
    uncapitalised = [
        f"{a['text']} {b['text']}"
        for a, b in itertools.pairwise(words)
        if a["text"].endswith((".", "!", "?")) and b["text"][:1].islower()
    ]
    latencies = result.word_latencies()
    final = next((r for r in result.messages if r.message.get("type") == "Final"), None)
    last_sent = result.sent[-1][1] if result.sent else None
    return Report(
        audio_s=audio_s,
        segments=len(segments),
        pauses=pauses,
        reference_words=len(ref),
        hypothesis_words=len(hyp),
        wer=stats.wer,
        substitutions=stats.substitutions,
        deletions=stats.deletions,
        insertions=stats.insertions,
        doubled=doubled,
        lost_runs=lost,
        times_in_order=in_order,
        uncapitalised=uncapitalised,
        first_word_latency_s=latencies[0] if latencies else None,
        word_latency_p50_s=statistics.median(latencies) if latencies else None,
        word_latency_p95_s=statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else None,
        final_latency_s=(final.at_s - last_sent) if final and last_sent is not None else None,
        server_cpu_s=None,
        wall_s=wall_s,
    )


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_report(report: Report, mode: str) -> None:
    def fmt(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    print(
        f"long-form stream ({mode}): {report.audio_s / 60:.1f} min, "
        f"{report.segments} clips, {report.pauses} pauses"
    )
    rows = [
        ("reference / hypothesis words", f"{report.reference_words} / {report.hypothesis_words}"),
        (
            "WER",
            f"{report.wer * 100:.2f}% "
            f"(S {report.substitutions}, D {report.deletions}, I {report.insertions})",
        ),
        ("doubled words", str(len(report.doubled))),
        ("lost runs (>= 2 words)", str(len(report.lost_runs))),
        ("times in order", "yes" if report.times_in_order else "NO"),
        ("no capital after a full stop", str(len(report.uncapitalised))),
        ("first word latency", f"{fmt(report.first_word_latency_s)} s"),
        ("word latency p50 / p95", f"{fmt(report.word_latency_p50_s)} / {fmt(report.word_latency_p95_s)} s"),
        ("final after end of audio", f"{fmt(report.final_latency_s)} s"),
        ("server CPU", f"{fmt(report.server_cpu_s, '.0f')} s over {report.wall_s:.0f} s wall"),
    ]
    for name, value in rows:
        print(f"  {name:<30} {value}")
    for kind, items in (
        ("doubled", report.doubled),
        ("lost", report.lost_runs),
        ("lower case", report.uncapitalised),
    ):
        for item in items[:10]:
            print(f"  {kind}: {item}")
    print("PASS" if report.passed else "FAIL")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the stream")
    parser.add_argument("--seed", type=int, default=1, help="order of the clips and where pauses fall")
    parser.add_argument("--fast", action="store_true", help="send as fast as the server takes it")
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)

    audio, segments, pauses = build_stream(args.manifest, args.minutes, args.seed)
    mode = "fast" if args.fast else "real time"
    print(f"streaming {audio.size / SAMPLE_RATE / 60:.1f} min ({mode})...", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        pid = None
        url = args.url
        if url is None:
            server = stack.enter_context(serve_process(["--engine", "whisper", "--slots", "1"]))
            url, pid = server.ws_url, server.proc.pid
        cpu_before = process_cpu_s(pid) if pid else None
        started = time.perf_counter()
        result = asyncio.run(
            stream_audio(url, audio, realtime=not args.fast, language="en", final_timeout_s=600.0)
        )
        wall = time.perf_counter() - started
        cpu_after = process_cpu_s(pid) if pid else None
    report = check(result, segments, audio.size / SAMPLE_RATE, pauses, wall)
    if cpu_before is not None and cpu_after is not None:
        report = Report(**{**asdict(report), "server_cpu_s": cpu_after - cpu_before})
    print_report(report, mode)
    if args.json_out:
        data: dict[str, Any] = {"mode": mode, "minutes": args.minutes, "seed": args.seed, **asdict(report)}
        data["transcript"] = " ".join(w["text"] for w in result.words)
        args.json_out.write_text(json.dumps(data, indent=2))
        print(f"wrote {args.json_out}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
