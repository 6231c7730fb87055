"""CPU engine benchmark: accuracy and latency of `stt serve --engine whisper` on real clips.

Starts `stt serve` in its own process (or uses `--url`), then streams every clip of a
manifest (default: ../shared/samples/manifest.jsonl) in real time, one stream at a time and
then N at once (`--concurrency 1,2`), and one stream at a time as fast as the server takes it
(throughput). Reports, per language and per voice (pico, espeak-ng):

- WER, both sides normalised by `stt.tools.wer` (numbers spelled out with num2words);
- RTF: wall time from the first audio to the Final over the audio duration (real-time
  streams cannot go below 1; the fast pass shows the engine's own speed);
- first-word latency: when the first Word arrived minus when the audio up to that word's
  end had been sent; word latency (mean over words) the same for every word;
- final latency: the Final's arrival minus when the last audio was sent;
- server CPU per audio second (user + system time of the started server over the audio it
  transcribed; the decoder is most of it), per decode search.

`--search none/none,final/none,final/final` runs everything once per search choice, each in
a server of its own started with `--whisper-beam BEAM --whisper-fallback FALLBACK`, and
adds a table of WER, latencies and CPU per choice. Prints tables and writes JSON, with the
CPU model and the load average before and after. Synthetic voices overstate accuracy on real
speech.

    python benchmarks/cpu_engine.py --quick                  # 4 clips, a minute or two
    python benchmarks/cpu_engine.py --json-out cpu.json      # every clip
    python benchmarks/cpu_engine.py --hint                   # send each clip's language
    python benchmarks/cpu_engine.py --manifest my/manifest.jsonl --model tiny.en
    python benchmarks/cpu_engine.py --voices pico --concurrency 1 --no-fast \
        --search none/none,final/none,final/final,spare/all      # beam and fallback choices
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stt.audio import read_audio
from stt.constants import SAMPLE_RATE
from stt.tools.client import StreamResult, stream_audio
from stt.tools.samples import read_manifest
from stt.tools.serve_process import serve_process
from stt.tools.wer import word_errors

if __package__ in (None, ""):  # run as a script: its sibling modules are `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import DEFAULT_MANIFEST, cpu_model


@dataclass(frozen=True)
class Clip:
    id: str
    lang: str
    voice: str
    """Voice family: the part of the manifest's voice before ':' (pico, espeak-ng)."""
    path: Path
    ref_text: str
    duration_s: float


@dataclass
class Run:
    """One stream of one clip."""

    clip: str
    lang: str
    voice: str
    search: str
    """BEAM/FALLBACK of the server (`--search`), or "default"."""
    mode: str
    """realtime-xN (N concurrent streams) or fast."""
    duration_s: float
    transcript: str
    errors: int
    reference_words: int
    wer: float
    rtf: float
    first_word_latency_s: float | None
    word_latency_s: float | None
    final_latency_s: float | None
    close_code: int | None


def load_manifest(path: Path) -> tuple[list[Clip], list[Clip]]:
    """(clips with speech to score, silent clips that must give no word), in manifest order."""
    speech: list[Clip] = []
    silent: list[Clip] = []
    for row in read_manifest(path):
        clip = Clip(
            row["id"],
            row["lang"],
            str(row.get("voice", "unknown")).split(":")[0],
            path.parent / row["wav24k_path"],
            row["ref_text"],
            float(row["duration_s"]),
        )
        (speech if row.get("ref_text") else silent).append(clip)
    return speech, silent


def quick_pick(clips: list[Clip], n: int) -> list[Clip]:
    """n clips spread over every (language, voice) group, so a short run still covers them."""
    groups: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for clip in clips:
        groups[(clip.lang, clip.voice)].append(clip)
    picked: list[Clip] = []
    while len(picked) < min(n, len(clips)):
        for group in groups.values():
            if group and len(picked) < n:
                picked.append(group.pop(0))
    return picked


def measure(clip: Clip, result: StreamResult, mode: str, search: str = "default") -> Run:
    stats = word_errors(clip.ref_text, result.transcript, clip.lang)
    final = next((r for r in result.messages if r.message.get("type") == "Final"), None)
    last_sent = result.sent[-1][1] if result.sent else None
    latencies = result.word_latencies()
    return Run(
        clip=clip.id,
        lang=clip.lang,
        voice=clip.voice,
        search=search,
        mode=mode,
        duration_s=clip.duration_s,
        transcript=result.transcript,
        errors=stats.errors,
        reference_words=stats.reference_words,
        wer=stats.wer,
        rtf=(final.at_s / clip.duration_s) if final else float("nan"),
        first_word_latency_s=latencies[0] if latencies else None,
        word_latency_s=statistics.fmean(latencies) if latencies else None,
        final_latency_s=(final.at_s - last_sent) if final and last_sent is not None else None,
        close_code=result.close_code,
    )


async def stream_group(
    url: str, clips: Sequence[Clip], *, realtime: bool, mode: str, hint: bool, search: str = "default"
) -> list[Run]:
    results = await asyncio.gather(
        *(
            stream_audio(url, read_audio(c.path), realtime=realtime, language=c.lang if hint else None)
            for c in clips
        )
    )
    return [measure(c, r, mode, search) for c, r in zip(clips, results, strict=True)]


async def run_all(
    url: str,
    clips: list[Clip],
    concurrency: Sequence[int],
    *,
    fast: bool,
    hint: bool,
    search: str = "default",
) -> list[Run]:
    runs: list[Run] = []
    for n in concurrency:
        for i in range(0, len(clips), n):
            group = clips[i : i + n]
            runs += await stream_group(
                url, group, realtime=True, mode=f"realtime-x{n}", hint=hint, search=search
            )
            print(f"  {search} realtime x{n}: {min(i + n, len(clips))}/{len(clips)} clips", file=sys.stderr)
    if fast:
        for clip in clips:
            runs += await stream_group(url, [clip], realtime=False, mode="fast", hint=hint, search=search)
        print(f"  {search} fast: {len(clips)} clips", file=sys.stderr)
    return runs


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (search, mode, language, voice), plus an 'all' row per search and mode."""
    keyed: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        keyed[(run.search, run.mode, run.lang, run.voice)].append(run)
        keyed[(run.search, run.mode, "all", "all")].append(run)
    rows = []
    for (search, mode, lang, voice), group in sorted(keyed.items()):
        errors, words = sum(r.errors for r in group), sum(r.reference_words for r in group)
        rows.append(
            {
                "search": search,
                "mode": mode,
                "lang": lang,
                "voice": voice,
                "clips": len(group),
                "wer": errors / max(1, words),
                "rtf": _mean([r.rtf for r in group]),
                "first_word_latency_s": _mean([r.first_word_latency_s for r in group]),
                "word_latency_s": _mean([r.word_latency_s for r in group]),
                "final_latency_s": _mean([r.final_latency_s for r in group]),
                "bad_closes": sum(r.close_code != 1000 for r in group),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = f"{'search':<12} {'mode':<12} {'lang':<4} {'voice':<10} {'clips':>5} {'WER':>6} {'RTF':>5} "
    header += f"{'first word':>10} {'word lat':>8} {'final lat':>9} {'bad':>3}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['search']:<12} {r['mode']:<12} {r['lang']:<4} {r['voice']:<10} {r['clips']:>5} "
            f"{r['wer'] * 100:>5.1f}% "
            f"{fmt(r['rtf'], '5.2f')} {fmt(r['first_word_latency_s'], '9.2f')}s "
            f"{fmt(r['word_latency_s'], '7.2f')}s {fmt(r['final_latency_s'], '8.2f')}s {r['bad_closes']:>3}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="JSONL: id, lang, voice, ...")
    parser.add_argument("--limit", type=int, default=0, help="at most this many clips (0: all)")
    parser.add_argument("--quick", action="store_true", help="4 clips covering each language and voice")
    parser.add_argument("--concurrency", default="1,2", help="comma-separated concurrent streams")
    parser.add_argument("--no-fast", action="store_true", help="skip the as-fast-as-possible pass")
    parser.add_argument("--hint", action="store_true", help="send each clip's language (else detected)")
    parser.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--model", help="--model of the started server (default: the engine's)")
    parser.add_argument("--cpu-threads", type=int, help="--cpu-threads of the started server")
    parser.add_argument(
        "--search",
        default="",
        help="comma-separated BEAM/FALLBACK choices (--whisper-beam, --whisper-fallback), one server each",
    )
    parser.add_argument("--voices", default="", help="comma-separated voice families to run (default: all)")
    parser.add_argument("--json-out", type=Path, help="write runs and summary here")
    args = parser.parse_args(argv)

    clips, silent_clips = load_manifest(args.manifest)
    if args.voices:
        clips = [c for c in clips if c.voice in args.voices.split(",")]
    limit = 4 if args.quick and not args.limit else args.limit
    if limit:
        clips = quick_pick(clips, limit)
    concurrency = [int(n) for n in args.concurrency.split(",") if n.strip()]
    flags = ["--engine", "whisper", "--slots", str(max([*concurrency, 1]))]
    if args.model:
        flags += ["--model", args.model]
    if args.cpu_threads is not None:
        flags += ["--cpu-threads", str(args.cpu_threads)]

    searches = [c.strip() for c in args.search.split(",") if c.strip()]
    for choice in searches:
        if choice.count("/") != 1:
            parser.error(f"--search takes BEAM/FALLBACK choices (like final/none), got {choice!r}")
    if searches and args.url:
        parser.error("--search starts a server per choice: it cannot be used with --url")

    started = time.perf_counter()
    load_before = os.getloadavg()
    runs: list[Run] = []
    silence: list[Run] = []
    cpu: list[dict[str, Any]] = []
    for search in searches or ["default"]:
        served_flags = list(flags)
        if search != "default":
            beam, fallback = search.split("/")
            served_flags += ["--whisper-beam", beam, "--whisper-fallback", fallback]
        with contextlib.ExitStack() as stack:
            server = None if args.url else stack.enter_context(serve_process(served_flags))
            url = args.url or (server.ws_url if server else "")
            cpu_before = _cpu_s(server.proc.pid) if server else None
            got = asyncio.run(
                run_all(url, clips, concurrency, fast=not args.no_fast, hint=args.hint, search=search)
            )
            if server and cpu_before is not None:
                audio = sum(r.duration_s for r in got)
                used = _cpu_s(server.proc.pid) - cpu_before
                cpu.append(
                    {"search": search, "audio_s": audio, "cpu_s": used, "cpu_per_audio_s": used / audio}
                )
            runs += got
            # silent clips in real time, one at a time: what a live microphone in a quiet room sends
            silence += [
                run
                for clip in silent_clips
                for run in asyncio.run(
                    stream_group(url, [clip], realtime=True, mode="silence", hint=False, search=search)
                )
            ]
    load_after = os.getloadavg()
    rows = summarise(runs)
    print_table(rows)
    if cpu:
        print(f"\n{'search':<12} {'audio':>7} {'server CPU':>10} {'CPU/audio s':>11}")
        for c in cpu:
            print(
                f"{c['search']:<12} {c['audio_s']:>6.0f}s {c['cpu_s']:>9.1f}s {c['cpu_per_audio_s']:>11.3f}"
            )
    silence_words = sum(len(r.transcript.split()) for r in silence)
    if silence:
        verdict = "ok" if silence_words == 0 else "FAIL: words on silence"
        print(f"silence: {len(silence)} clips, {silence_words} words ({verdict})")
    audio_s = sum(r.duration_s for r in runs)
    print(f"{len(runs)} streams, {audio_s:.0f} s of audio in {time.perf_counter() - started:.0f} s")
    print(f"{cpu_model()}; load average {_load(load_before)} before, {_load(load_after)} after")
    if args.json_out:
        report = {
            "manifest": str(args.manifest),
            "server_flags": flags if not args.url else None,
            "searches": searches or None,
            "language_hint": args.hint,
            "sample_rate": SAMPLE_RATE,
            "cpu_model": cpu_model(),
            "load_before": load_before,
            "load_after": load_after,
            "summary": rows,
            "server_cpu": cpu,
            "runs": [asdict(r) for r in runs],
            "silence": {"clips": len(silence), "words": silence_words, "runs": [asdict(r) for r in silence]},
        }
        args.json_out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json_out}")
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(load: tuple[float, ...]) -> str:
    return " / ".join(f"{v:.2f}" for v in load)


if __name__ == "__main__":
    raise SystemExit(main())
