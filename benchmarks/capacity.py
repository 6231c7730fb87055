"""Capacity benchmark: how many real-time streams the whisper engine serves at lone-stream
latency, old code against new, in one run.

Each source tree runs in a process of its own (`PYTHONPATH=TREE/src`), one after the other,
against the same clips and schedule, as `benchmarks/flush_stall.py` does; by default "old"
is a `git worktree` of `--before` (removed afterwards), "new" is this tree and "new-b8" this
tree with `--whisper-batch 8` (up to 8 streams per decode call: what batching gives). In each, the
whisper engine runs in-process behind the scheduler with `--levels` lanes of streams at once
(1, 2, 3, ...): the Pico clips of the manifest (English and French) are dealt over the
lanes, and each lane streams its clips one after the other, one stream per clip, in real
time in 240 ms chunks, without a language hint. Per level it reports:

- first word: the first word's arrival minus when the chunk holding that word's end was
  pushed, p50 and p95 over the streams;
- final: the stream's end (its last chunk) to its last words (finished), p50 and p95;
- WER of all streams' transcripts (normalised by `stt.tools.wer`);
- decodes run, and the new engine's measured capacity (`capacity()`) after the level.

A level *holds* when its first-word p50 is within `--first-word-ratio` (1.5) of the same
tree's lone stream, its final p50 is under `--final-s` (0.8 s) and its WER is no worse than
the old tree's lone-stream WER. The table gives the largest level that holds per tree.
Slots are the largest level for both trees (explicit), so admission never limits a level.

    python benchmarks/capacity.py                               # ~8 minutes on 2 cores
    python benchmarks/capacity.py --levels 1,2,4,6 --json-out capacity.json
    python benchmarks/capacity.py --tree old=/path/to/checkout --tree new=. --tree b4=.@batch=4

Prints a table and writes JSON with the CPU model and the load average before each tree:
the development machine is shared, so every figure carries its load.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: its sibling modules are `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import DEFAULT_MANIFEST, ROOT, cpu_model, detached_worktree, run_worker
from benchmarks.timeline import StreamTimeline

BEFORE = "7ed803b"
"""main just before admission by measured capacity and batched decodes."""
CHUNK_FRAMES = 3
"""240 ms chunks: first-word times to a quarter of a second."""


# -- the worker: one source tree, in its own process ------------------------------------------


@dataclass
class _Stream(StreamTimeline):
    """A stream of one clip: its words, for the WER."""

    clip: str = ""
    words: list[str] = field(default_factory=list)

    def on_events(self, events: Sequence[Any]) -> None:
        super().on_events(events)
        self.words.extend(event.text for event in events if hasattr(event, "text"))


async def _lane(scheduler: Any, clips: list[tuple[str, Any]], streams: list[_Stream]) -> None:
    for clip_id, audio in clips:
        stream = _Stream(clip=clip_id)
        streams.append(stream)
        async with scheduler.stream(stream, None, wait_s=60.0) as handle:
            await stream.play(handle, audio, CHUNK_FRAMES)


def _engine(model: str | None, slots: int, options: dict[str, Any]) -> Any:
    """The tree's engine; `options` are WhisperOptions fields (`--tree new-b1=.@batch=1`)."""
    from stt.engine.whisper import engine as whisper
    from stt.engine.whisper.options import WhisperOptions

    opts = WhisperOptions(**options) if options else None
    if hasattr(WhisperOptions, "decode_threads"):  # the tree loads a generator copy: as `stt serve` builds it
        return whisper.build(model, opts or WhisperOptions(), slots=slots)
    return whisper.WhisperEngine(whisper.load_model(model), opts, slots=slots)


def _capacity(engine: Any) -> dict[str, Any] | None:
    if not hasattr(engine, "capacity"):
        return None
    found: dict[str, Any] = engine.capacity().as_dict()
    return found


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """Every level on the tree that `import stt` finds (PYTHONPATH)."""
    import stt
    from stt.audio import read_audio

    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    pico = [r for r in rows if r.get("ref_text") and "espeak" not in str(r.get("voice", "")) + r["id"]]
    by_lang = [[r for r in pico if r["lang"] == lang] for lang in ("en", "fr")]
    picked = [r for pair in zip(*by_lang, strict=False) for r in pair][: args.clips or None]  # en, fr, en...
    clips = [(r["id"], read_audio(manifest.parent / r["wav24k_path"])) for r in picked]
    refs = {r["id"]: (r["ref_text"], r["lang"]) for r in picked}
    levels = [int(n) for n in args.levels.split(",")]
    result = asyncio.run(_work(args, clips, refs, levels))
    return {"stt": str(Path(stt.__file__).resolve().parents[1]), **result}


async def _work(
    args: argparse.Namespace,
    clips: list[tuple[str, Any]],
    refs: dict[str, tuple[str, str]],
    levels: list[int],
) -> dict[str, Any]:
    from stt.scheduler import Scheduler
    from stt.tools.wer import word_errors

    engine = _engine(args.model, max(levels), json.loads(args.options))
    scheduler = Scheduler(engine)
    await scheduler.start()
    warm_capacity = _capacity(engine)
    out = []
    for n in levels:
        load = os.getloadavg()[0]
        decodes = getattr(engine, "decodes", 0)
        skipped = getattr(engine, "skipped", 0)
        streams: list[_Stream] = []
        begin = time.perf_counter()
        await asyncio.gather(*(_lane(scheduler, clips[lane::n], streams) for lane in range(n)))
        wall = time.perf_counter() - begin
        errors = words = 0
        for s in streams:
            ref, lang = refs[s.clip]
            stats = word_errors(ref, " ".join(s.words), lang)
            errors, words = errors + stats.errors, words + stats.reference_words
        firsts = sorted(s.first_word_s for s in streams if s.first_word_s is not None)
        finals = sorted(s.finished_at - s.ended_at for s in streams if s.finished_at and s.ended_at)
        out.append(
            {
                "level": n,
                "streams": len(streams),
                "failed": sum(s.failed for s in streams),
                "wall_s": round(wall, 1),
                "load_avg_1m_before": round(load, 2),
                "first_word_p50_s": _round(_pct(firsts, 50)),
                "first_word_p95_s": _round(_pct(firsts, 95)),
                "final_p50_s": _round(_pct(finals, 50)),
                "final_p95_s": _round(_pct(finals, 95)),
                "wer": round(errors / max(1, words), 4),
                "decodes": getattr(engine, "decodes", 0) - decodes,
                "skipped_decodes": getattr(engine, "skipped", 0) - skipped,
                "capacity_after": _capacity(engine),
            }
        )
        print(f"  level {n}: {out[-1]}", file=sys.stderr)
    await scheduler.stop()
    return {"capacity_after_warmup": warm_capacity, "levels": out}


def _pct(values: Sequence[float], p: int) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- the driver: every tree, one after the other ----------------------------------------------


def _run_tree(label: str, tree: Path, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    command = ["--levels", args.levels, "--options", json.dumps(options)]
    command += ["--manifest", str(args.manifest), "--clips", str(args.clips)]
    command += ["--model", args.model] if args.model else []
    result, load_before = run_worker(label, tree, __file__, command)
    return {
        "tree": label,
        "options": options,
        **result,
        "load_avg_before": [round(x, 2) for x in load_before],
    }


def judge(trees: list[dict[str, Any]], ratio: float, final_s: float) -> None:
    """Mark each level that holds the targets and give each tree its largest such level."""
    reference = next((t for t in trees if t["tree"] == "old"), trees[0])
    lone_wer = reference["levels"][0]["wer"]
    for tree in trees:
        lone = tree["levels"][0]["first_word_p50_s"]
        best = 0
        for row in tree["levels"]:
            fw, final = row["first_word_p50_s"], row["final_p50_s"]
            row["holds"] = bool(
                fw is not None
                and lone is not None
                and final is not None
                and fw <= ratio * lone
                and final < final_s
                and row["wer"] <= lone_wer
                and not row["failed"]
            )
            if row["holds"] and row["level"] > best:
                best = row["level"]
        tree["largest_level_holding"] = best


def _print(trees: list[dict[str, Any]]) -> None:
    head = f"{'tree':<5} {'streams':>7} {'first word p50/p95':>19} {'final p50/p95':>14} {'WER':>6}"
    head += f" {'decodes':>7} {'capacity':>8} {'load':>5} holds"
    print(head)
    for tree in trees:
        for row in tree["levels"]:
            cap = (row.get("capacity_after") or {}).get("measured_streams")
            print(
                f"{tree['tree']:<5} {row['level']:>7} "
                f"{_s(row['first_word_p50_s'])} / {_s(row['first_word_p95_s'])}".ljust(34)
                + f" {_s(row['final_p50_s'])} / {_s(row['final_p95_s'])}"
                + f" {row['wer'] * 100:>5.1f}% {row['decodes']:>7} {cap if cap is not None else '-':>8}"
                + f" {row['load_avg_1m_before']:>5} {'yes' if row['holds'] else 'no'}"
            )
    for tree in trees:
        print(f"{tree['tree']}: largest concurrency holding the targets: {tree['largest_level_holding']}")


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH", help="source trees")
    parser.add_argument("--before", default=BEFORE, help="commit checked out as 'old' when no --tree")
    parser.add_argument("--levels", default="1,2,3,4,5,6", help="streams at once, the first one lone")
    parser.add_argument("--clips", type=int, default=0, help="Pico clips used (0: all)")
    parser.add_argument("--first-word-ratio", type=float, default=1.5)
    parser.add_argument("--final-s", type=float, default=0.8)
    parser.add_argument("--model", default=None, help="whisper model (default: the packaged one)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        Path(args.json_out).write_text(json.dumps(_worker(args)))
        return 0
    with contextlib.ExitStack() as stack:
        specs: list[tuple[str, Path, dict[str, Any]]] = []
        for spec in args.tree:
            label, _, rest = spec.partition("=")
            path, _, opts = rest.partition("@")
            options = {k: _number(v) for k, _, v in (o.partition("=") for o in opts.split(",") if o)}
            specs.append((label, Path(path).resolve(), options))
        if not specs:
            old = stack.enter_context(detached_worktree(ROOT, args.before))
            specs = [("old", old, {}), ("new", ROOT, {}), ("new-b8", ROOT, {"batch": 8})]
        trees = [_run_tree(label, tree, options, args) for label, tree, options in specs]
    judge(trees, args.first_word_ratio, args.final_s)
    report = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "levels": args.levels,
        "first_word_ratio": args.first_word_ratio,
        "final_s": args.final_s,
        "trees": trees,
    }
    _print(trees)
    loads = ", ".join(f"{t['tree']} {t['load_avg_before']}" for t in trees)
    print(f"CPU: {report['cpu_model']} x{report['cpus']}; load average before each tree: {loads}", end="")
    print(f"; after {report['load_avg_after']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
