"""Flush-stall benchmark: does one stream's end stall the others? Before and after, one run.

Ten lanes of real-time streams run through the whisper engine's scheduler in-process, each
lane one stream after another (`--clips-per-stream` sample clips with 0.6 s pauses between,
in 480 ms chunks, then the end of stream, then the next stream), lane i starting
i * `--stagger-s` later, so streams end at staggered times while the others keep talking.
For each source tree it reports:

- engine step time (the scheduler's step observer: the engine thread's wall time per step),
  p50 / p99 / max, and how many steps took longer than one 80 ms frame;
- first-word latency of the streams still running: the first Word's arrival minus when the
  chunk holding that word's end was pushed, counting only words that arrive before the
  stream's own end (a stream's words after its end are its final latency, reported apart);
- word latency (every such word) and final latency (end of stream -> finished).

Each tree runs in a process of its own with `PYTHONPATH=TREE/src`, one after the other,
against the same clips and schedule (`--repeat 2`: before, after, after, before). By
default "before" is a `git worktree` of the commit before the non-blocking boundary
(b444396, removed afterwards) and "after" is this tree:

    python benchmarks/flush_stall.py                        # ~2 minutes on 2 cores
    python benchmarks/flush_stall.py --repeat 2 --json-out flush_stall.json
    python benchmarks/flush_stall.py --tree old=/path/to/checkout --tree new=.

Prints a table and writes JSON (with the CPU model and load average beside the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: its sibling modules are `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import DEFAULT_MANIFEST, ROOT, cpu_model, detached_worktree, run_worker
from benchmarks.timeline import StreamTimeline

BEFORE = "b444396"
"""main just before the engine boundary stopped waiting for flushes."""
CHUNK_FRAMES = 6
"""480 ms chunks, as the recommended client sends them."""


# -- the worker: one source tree, in its own process ------------------------------------------


@dataclass
class _Stream(StreamTimeline):
    """A stream of joined clips: the latency of every word before its own end."""

    word_latencies: list[float] = field(default_factory=list)

    def on_events(self, events: Sequence[Any]) -> None:
        now = time.perf_counter()
        if self.ended_at is not None:
            return  # words after the stream's own end: its final latency, not a stall
        for event in events:
            if hasattr(event, "text"):
                latency = self.latency(event.end_s, now)
                self.word_latencies.append(latency)
                if self.first_word_s is None:
                    self.first_word_s = latency


def _build_engine(name: str, model: str | None, slots: int) -> Any:
    """The engine of whichever tree is on the path (the fake one checks the benchmark itself)."""
    if name == "fake":
        from stt.engine.fake.engine import FakeEngine

        return FakeEngine(slots=slots)
    from stt.engine.whisper import engine as whisper

    if hasattr(whisper.WhisperOptions, "decode_threads"):  # a generator copy: as `stt serve` builds it
        return whisper.build(model, whisper.WhisperOptions(), slots=slots)
    loaded = whisper.load_model(model)
    if hasattr(whisper, "build"):  # slots apart from the engine's options (one home per setting)
        return whisper.WhisperEngine(loaded, slots=slots)
    return whisper.WhisperEngine(loaded, whisper.WhisperOptions(slots=slots))


@contextlib.asynccontextmanager
async def _open(scheduler: Any, listener: _Stream) -> AsyncIterator[Any]:
    """A stream's handle, through whichever admission API the tree has."""
    if hasattr(scheduler, "stream"):
        async with scheduler.stream(listener, None, wait_s=60.0) as handle:
            yield handle
        return
    handle = await scheduler.open_waiting(listener, None, 60.0)
    try:
        yield handle
    finally:
        handle.close()


async def _lane(
    scheduler: Any,
    clips: list[Any],
    per_stream: int,
    lane: int,
    start: float,
    deadline: float,
    streams: list[_Stream],
) -> None:
    import numpy as np

    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    k = lane * per_stream
    gap = np.zeros(int(0.6 * 24_000), dtype=np.float32)
    while time.perf_counter() < deadline:
        parts = [clips[(k + j) % len(clips)] for j in range(per_stream)]
        k += per_stream
        audio = np.concatenate([x for part in parts for x in (part, gap)][:-1])
        stream = _Stream()
        streams.append(stream)
        async with _open(scheduler, stream) as handle:
            await stream.play(handle, audio, CHUNK_FRAMES)


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run the lanes on the tree that `import stt` finds (PYTHONPATH)."""
    import stt
    from stt.audio import read_audio

    manifest = Path(args.manifest)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = [read_audio(manifest.parent / r["wav24k_path"]) for r in rows if r["lang"] in ("en", "fr")]
    result = asyncio.run(_work(args, [c for c in clips if c.size > 24_000]))
    return {"stt": str(Path(stt.__file__).resolve().parents[1]), **result}


async def _work(args: argparse.Namespace, clips: list[Any]) -> dict[str, Any]:
    from stt.scheduler import Scheduler

    engine = _build_engine(args.engine, args.model, args.slots)
    scheduler = Scheduler(engine)
    await scheduler.start()
    steps: list[tuple[float, int]] = []
    scheduler.add_step_observer(lambda seconds, rows: steps.append((seconds, rows)))
    streams: list[_Stream] = []
    begin = time.perf_counter()
    deadline = begin + args.seconds
    lanes = [
        _lane(scheduler, clips, args.clips_per_stream, lane, begin + lane * args.stagger_s, deadline, streams)
        for lane in range(args.streams)
    ]
    await asyncio.gather(*lanes)
    wall = time.perf_counter() - begin
    await scheduler.stop()
    step_s = sorted(s for s, _ in steps)
    firsts = [s.first_word_s for s in streams if s.first_word_s is not None]
    words = [w for s in streams for w in s.word_latencies]
    finals = [s.finished_at - s.ended_at for s in streams if s.finished_at and s.ended_at]
    return {
        "wall_s": round(wall, 1),
        "streams": len(streams),
        "failed": sum(s.failed for s in streams),
        "steps": len(step_s),
        "empty_steps": sum(1 for _, rows in steps if rows == 0),
        "step_p50_ms": _ms(_pct(step_s, 50)),
        "step_p99_ms": _ms(_pct(step_s, 99)),
        "step_max_ms": _ms(step_s[-1] if step_s else None),
        "steps_over_80ms": sum(1 for s in step_s if s > 0.08),
        "first_word_p50_ms": _ms(_pct(sorted(firsts), 50)),
        "first_word_p95_ms": _ms(_pct(sorted(firsts), 95)),
        "first_word_max_ms": _ms(max(firsts) if firsts else None),
        "word_p50_ms": _ms(_pct(sorted(words), 50)),
        "word_p99_ms": _ms(_pct(sorted(words), 99)),
        "final_p50_ms": _ms(_pct(sorted(finals), 50)),
        "final_p95_ms": _ms(_pct(sorted(finals), 95)),
        "decodes": getattr(engine, "decodes", None),
    }


def _pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[index]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- the driver: every tree, one after the other ----------------------------------------------


def _run_tree(label: str, tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = ["--seconds", str(args.seconds), "--streams", str(args.streams)]
    command += ["--slots", str(args.slots), "--stagger-s", str(args.stagger_s)]
    command += ["--clips-per-stream", str(args.clips_per_stream), "--engine", args.engine]
    command += ["--manifest", str(args.manifest)] + (["--model", args.model] if args.model else [])
    result, load_before = run_worker(label, tree, __file__, command)
    return {"tree": label, **result, "load_avg_1m_before": round(load_before[0], 2)}


def _print(rows: list[dict[str, Any]]) -> None:
    columns = [
        ("tree", "tree", "<8"),
        ("streams", "streams", ">7"),
        ("steps", "steps", ">6"),
        ("step_p50_ms", "step p50", ">9"),
        ("step_p99_ms", "step p99", ">9"),
        ("step_max_ms", "step max", ">9"),
        ("steps_over_80ms", ">80ms", ">6"),
        ("first_word_p50_ms", "1st word p50", ">13"),
        ("first_word_p95_ms", "1st word p95", ">13"),
        ("word_p99_ms", "word p99", ">9"),
        ("final_p50_ms", "final p50", ">10"),
        ("final_p95_ms", "final p95", ">10"),
    ]
    print(" ".join(f"{title:{align}}" for _, title, align in columns))
    for row in rows:
        cells = ["-" if row[key] is None else row[key] for key, _, _ in columns]
        print(" ".join(f"{cell!s:{align}}" for cell, (_, _, align) in zip(cells, columns, strict=True)))
    print("(times in ms; step = engine thread per step; latencies of streams still running)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH", help="source trees")
    parser.add_argument("--before", default=BEFORE, help="commit checked out as 'before' when no --tree")
    parser.add_argument("--seconds", type=float, default=40.0, help="time each tree runs its lanes")
    parser.add_argument("--streams", type=int, default=10, help="lanes of real-time streams")
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--stagger-s", type=float, default=0.7, help="start offset between lanes")
    parser.add_argument("--clips-per-stream", type=int, default=3, help="clips (with pauses) per stream")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tree, alternating")
    parser.add_argument("--engine", choices=("whisper", "fake"), default="whisper")
    parser.add_argument("--model", default=None, help="whisper model (default: the packaged one)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        Path(args.json_out).write_text(json.dumps(_worker(args)))
        return 0
    with contextlib.ExitStack() as stack:
        trees: list[tuple[str, Path]] = []
        for spec in args.tree:
            label, _, path = spec.partition("=")
            trees.append((label, Path(path).resolve()))
        if not trees:
            trees = [("before", stack.enter_context(detached_worktree(ROOT, args.before))), ("after", ROOT)]
        # alternate the trees, every other round in reverse order (before, after, after,
        # before): a machine whose load drifts during the run then favours neither
        order = [trees if r % 2 == 0 else trees[::-1] for r in range(args.repeat)]
        rows = [_run_tree(label, tree, args) for round_ in order for label, tree in round_]
    report = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "seconds": args.seconds,
        "streams": args.streams,
        "stagger_s": args.stagger_s,
        "clips_per_stream": args.clips_per_stream,
        "rows": rows,
    }
    _print(rows)
    print(f"CPU: {report['cpu_model']} x{report['cpus']}; load average before each tree:", end=" ")
    loads = ", ".join(f"{r['tree']} {r['load_avg_1m_before']}" for r in rows)
    print(loads, f"after {report['load_avg_1m_after']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
