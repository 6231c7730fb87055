"""GPU throughput of the Kyutai engine: step time per batch size, real-time streams per GPU.

Builds the full-size architectures of kyutai/stt-1b-en_fr (16 layers) and kyutai/stt-2.6b-en
(48 layers) with moshi's Mimi encoder and random weights, which cost exactly what the real
models cost, and for each batch size B runs the engine's own step: every slot active, one
80 ms frame of audio each, after warmup (CUDA graphs captured, compiled kernels built). A
stream is real time while one step takes at most 80 ms, so B streams are sustained when the
step's p99 stays under 80 ms. Kyutai's Rust server is published at 400 real-time streams
per H100; the target here is to match it from Python.

Each batch size is measured twice: steady (the same B streams throughout) and with churn,
as production runs: streams end and new ones take their slots at `--churn` streams per
second per 64 slots (default 1), so the table shows what admissions (a slot's reset) and
flushes cost at p99.

    python benchmarks/gpu_engine.py --json-out gpu_engine.json        # on a CUDA GPU
    python benchmarks/gpu_engine.py --models 1b --batch-sizes 64,128  # one shape, two sizes
    python benchmarks/gpu_engine.py --smoke                            # tiny model on CPU, seconds

Prints a table and writes JSON. A configuration that fails is reported (in the table, on
stderr with its traceback, and as `error` in its JSON row) and the others are still
measured; running out of GPU memory ends that shape's batch sizes. Exits 0 when every
configuration was measured (batch sizes past an out-of-memory excepted), 1 when one failed
or nothing could be measured, 2 on bad arguments or no CUDA device.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from stt.constants import FRAME_MS, FRAME_SAMPLES
from stt.engine.interface import FLUSHED, StepInput

FULL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512)
SMOKE_BATCHES = (1, 2, 4)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def churn_schedule(batch: int, steps: int, per_64_per_s: float) -> list[list[int]]:
    """Per step, the slots whose stream ends there and whose next stream starts at the next
    step: `per_64_per_s` streams a second per 64 slots, spread evenly, slots in turn."""
    per_step = per_64_per_s * batch / 64 * FRAME_MS / 1000
    schedule: list[list[int]] = []
    turn = 0
    for i in range(steps):
        due = min(batch, math.floor((i + 1) * per_step + 1e-9) - math.floor(i * per_step + 1e-9))
        schedule.append([(turn + k) % batch for k in range(due)])
        turn += due
    return schedule


def measure(model: Any, batch: int, steps: int, args: argparse.Namespace, churn: float) -> dict[str, Any]:
    """Step times (ms) of a `batch`-slot engine with every slot streaming; with `churn` > 0,
    streams end (flush row) and new ones start in their slots (reset row) at that rate."""
    from stt.engine.kyutai.engine import KyutaiEngine
    from stt.engine.kyutai.options import KyutaiOptions

    options = KyutaiOptions(cuda_graphs=args.cuda_graphs, compile=args.compile)
    engine = KyutaiEngine(model, slots=batch, options=options)
    try:
        t0 = time.perf_counter()
        engine.warmup()
        warmup_s = time.perf_counter() - t0
        rng = np.random.default_rng(batch)
        frames = (rng.normal(0, 0.1, (batch, FRAME_SAMPLES))).astype(np.float32)
        slots = np.arange(batch, dtype=np.int64)
        no = np.zeros(batch, np.bool_)
        engine.step(StepInput(slots, frames, np.ones(batch, np.bool_), no))
        for _ in range(args.warmup_steps):
            engine.step(StepInput(slots, frames, no, no))
        schedule = churn_schedule(batch, steps, churn) if churn > 0 else [[] for _ in range(steps)]
        times = []
        acked = 0
        starting: list[int] = []
        for ending in schedule:
            reset, flush = no.copy(), no.copy()
            reset[starting] = True
            flush[ending] = True
            step = StepInput(slots, frames, reset, flush)
            t = time.perf_counter()
            out = engine.step(step)  # ends with the results' copy to the host, so the GPU is done
            times.append((time.perf_counter() - t) * 1000)
            acked += sum(1 for events in out.events for event in events if event is FLUSHED)
            starting = ending
    finally:
        engine.close()
    p50, p99 = statistics.median(times), percentile(times, 99)
    return {
        "batch": batch,
        "churn_per_64_per_s": churn,
        "admissions": sum(len(e) for e in schedule),
        "flushes_acked": acked,
        "step_p50_ms": p50,
        "step_p99_ms": p99,
        "step_max_ms": max(times),
        "realtime": p99 <= FRAME_MS,
        "speed_x_realtime_p50": FRAME_MS / p50,
        "warmup_s": warmup_s,
        "steps": steps,
    }


def run_shape(
    name: str, model: Any, batches: list[int], steps: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Every batch size, steady then with churn, until a batch misses real time."""
    import torch

    print(f"model: {name}  dtype: {next(model.lm.parameters()).dtype}  churn: {args.churn:g}/s per 64 slots")
    header = f"{'batch':>6} {'p50 ms':>9} {'p99 ms':>9} {'churn p50':>10} {'churn p99':>10}"
    print(f"{header} {'x realtime':>11} {'realtime':>9}")
    rows: list[dict[str, Any]] = []
    for batch in batches:
        row: dict[str, Any] = {"batch": batch}
        try:
            for key, churn in (("steady", 0.0), ("churn", args.churn)):
                row[key] = measure(model, batch, steps, args, churn)
                gc.collect()
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
        except torch.cuda.OutOfMemoryError:
            print(f"{batch:>6} out of GPU memory")
            rows.append({"batch": batch, "error": "out of memory"})
            break  # larger batches need more memory still
        except Exception as exc:  # one broken configuration must not hide the others
            error = f"{type(exc).__name__}: {exc}"
            print(f"{batch:>6} failed: {error}")
            traceback.print_exc(file=sys.stderr)
            rows.append({"batch": batch, "error": error})
            continue
        row["realtime"] = row["steady"]["realtime"] and row["churn"]["realtime"]
        rows.append(row)
        steady, churned = row["steady"], row["churn"]
        print(
            f"{batch:>6} {steady['step_p50_ms']:>9.2f} {steady['step_p99_ms']:>9.2f} "
            f"{churned['step_p50_ms']:>10.2f} {churned['step_p99_ms']:>10.2f} "
            f"{steady['speed_x_realtime_p50']:>11.1f} {'yes' if row['realtime'] else 'no':>9}"
        )
        # On CPU (--smoke) real time says nothing about the script, and a shared machine's
        # load decides it: every asked batch size is measured.
        if not row["realtime"] and not (args.keep_going or args.smoke):
            break
    measured = [r for r in rows if "error" not in r]
    realtime = max((r["batch"] for r in measured if r["realtime"]), default=0)
    print(f"{name}: {realtime} real-time streams (largest batch with step p99 <= {FRAME_MS} ms, with churn)")
    return {"model": name, "realtime_streams": realtime, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny random model on CPU (checks the script)")
    parser.add_argument("--models", default="1b,2.6b", help="shapes to measure: 1b, 2.6b (default both)")
    parser.add_argument("--batch-sizes", type=str, default=None, help="comma-separated; default 1..512")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 200)")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument(
        "--churn", type=float, default=1.0, help="streams joining (and leaving) per second per 64 slots"
    )
    parser.add_argument("--device", default=None, help="default cuda (cpu with --smoke)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument(
        "--keep-going", action="store_true", help="measure larger batches after the first one over 80 ms"
    )
    parser.add_argument("--json-out", type=Path, default=Path("gpu_engine.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ.setdefault("NO_TORCH_COMPILE", "1")  # before moshi is imported
    import torch

    from stt.engine.kyutai.testing import (
        random_model,
        stt_1b_lm_config,
        stt_2b6_lm_config,
        tiny_lm_config,
        tiny_mimi_config,
    )

    device = args.device or ("cpu" if args.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or use --smoke to check the script on CPU", file=sys.stderr)
        return 2
    shapes = {"1b": stt_1b_lm_config, "2.6b": stt_2b6_lm_config}
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in shapes]
    if unknown:
        print(f"unknown --models {unknown}; choose from {sorted(shapes)}", file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)
    batches = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    batches = batches or list(SMOKE_BATCHES if args.smoke else FULL_BATCHES)
    steps = args.steps or (5 if args.smoke else 200)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    print(f"device: {gpu}  cuda graphs: {args.cuda_graphs}")
    results = []
    for name in names:
        try:
            if args.smoke:  # the tiny model stands in for every shape: this checks the script only
                model = random_model(tiny_lm_config(), tiny_mimi_config(), device=device, dtype=args.dtype)
            else:
                model = random_model(shapes[name](), device=device, dtype=args.dtype)
        except Exception as exc:  # e.g. out of memory for the larger shape: measure the others
            error = f"{type(exc).__name__}: {exc}"
            print(f"model: {name}  could not be built: {error}")
            results.append({"model": name, "realtime_streams": 0, "rows": [], "error": error})
            continue
        results.append(run_shape(name, model, batches, steps, args))
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    failed = [f"{res['model']}" for res in results if "error" in res] + [
        f"{res['model']} batch {r['batch']}"
        for res in results
        for r in res["rows"]
        if "error" in r and r["error"] != "out of memory"
    ]
    result = {
        "device": gpu,
        "smoke": args.smoke,
        "dtype": args.dtype,
        "cuda_graphs": args.cuda_graphs,
        "compile": args.compile,
        "churn_per_64_per_s": args.churn,
        "models": results,
    }
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")
    if failed:
        print(f"failed: {', '.join(failed)} (the others were measured)", file=sys.stderr)
        return 1
    if not any("error" not in r for res in results for r in res["rows"]):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
