"""GPU throughput of the Kyutai engine: step time per batch size, real-time streams per GPU.

Builds the full-size kyutai/stt-1b-en_fr architecture (moshi's Mimi encoder + the 16-layer,
2048-wide LM with its pause heads) with random weights, which costs exactly what the real
model costs, and for each batch size B runs the engine's own step: every slot active, one
80 ms frame of audio each, after warmup (CUDA graphs captured, compiled kernels built). A
stream is real time while one step takes at most 80 ms, so B streams are sustained when the
step's p99 stays under 80 ms. Kyutai's Rust server is published at 400 real-time streams
per H100; the target here is to match it from Python.

    python benchmarks/gpu_engine.py --json-out gpu_engine.json        # on a CUDA GPU
    python benchmarks/gpu_engine.py --smoke                            # tiny model on CPU, seconds

Prints a table and writes JSON. Exits 0 unless nothing could be measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from stt.constants import FRAME_MS, FRAME_SAMPLES
from stt.engine.interface import StepInput

FULL_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 192, 256, 320, 384, 448, 512)
SMOKE_BATCHES = (1, 2, 4)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(model: Any, batch: int, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """Step times (ms) of a `batch`-slot engine with every slot streaming."""
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
        first = StepInput(slots, frames, np.ones(batch, np.bool_), np.zeros(batch, np.bool_))
        steady = StepInput(slots, frames, np.zeros(batch, np.bool_), np.zeros(batch, np.bool_))
        engine.step(first)
        for _ in range(args.warmup_steps):
            engine.step(steady)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            engine.step(steady)  # ends with the tokens' copy to the host, so the GPU is done
            times.append((time.perf_counter() - t) * 1000)
    finally:
        engine.close()
    p50, p99 = statistics.median(times), percentile(times, 99)
    return {
        "batch": batch,
        "step_p50_ms": p50,
        "step_p99_ms": p99,
        "realtime": p99 <= FRAME_MS,
        "speed_x_realtime_p50": FRAME_MS / p50,
        "warmup_s": warmup_s,
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny random model on CPU (checks the script)")
    parser.add_argument("--batch-sizes", type=str, default=None, help="comma-separated; default 1..512")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per batch size (default 100)")
    parser.add_argument("--warmup-steps", type=int, default=5)
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

    from stt.engine.kyutai.testing import random_model, tiny_lm_config, tiny_mimi_config

    device = args.device or ("cpu" if args.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or use --smoke to check the script on CPU", file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)
        model = random_model(tiny_lm_config(), tiny_mimi_config(), device=device, dtype=args.dtype)
    else:
        model = random_model(device=device, dtype=args.dtype)
    batches = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    batches = batches or list(SMOKE_BATCHES if args.smoke else FULL_BATCHES)
    steps = args.steps or (5 if args.smoke else 100)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    print(f"device: {gpu}  dtype: {next(model.lm.parameters()).dtype}  cuda graphs: {args.cuda_graphs}")
    print(f"{'batch':>6} {'p50 ms':>9} {'p99 ms':>9} {'x realtime':>11} {'realtime':>9}")
    rows: list[dict[str, Any]] = []
    for batch in batches:
        try:
            row = measure(model, batch, steps, args)
        except torch.cuda.OutOfMemoryError:
            print(f"{batch:>6} out of GPU memory")
            rows.append({"batch": batch, "error": "out of memory"})
            break
        finally:
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        rows.append(row)
        print(
            f"{batch:>6} {row['step_p50_ms']:>9.2f} {row['step_p99_ms']:>9.2f} "
            f"{row['speed_x_realtime_p50']:>11.1f} {'yes' if row['realtime'] else 'no':>9}"
        )
        if not row["realtime"] and not args.keep_going:
            break
    measured = [r for r in rows if "error" not in r]
    if not measured:
        return 1
    realtime = max((r["batch"] for r in measured if r["realtime"]), default=0)
    print(f"real-time streams on one {gpu}: {realtime} (largest batch with step p99 <= {FRAME_MS} ms)")
    result = {
        "device": gpu,
        "smoke": args.smoke,
        "dtype": str(next(model.lm.parameters()).dtype),
        "cuda_graphs": args.cuda_graphs,
        "compile": args.compile,
        "realtime_streams": realtime,
        "rows": rows,
    }
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
