"""Server load benchmark: how many real-time streams one server process sustains.

For each concurrency level a fresh `stt serve --engine fake` runs in its own process (the
fake engine's step cost is `--step-ms`, slept outside the GIL like a GPU step) and load
processes (multiprocessing, asyncio + websockets) open that many streams, then stream
tone-coded audio paced in real time (`--chunk-ms` chunks, each sent when its audio "has
been recorded"; stream starts are spread over one chunk so the load is smooth, and their
lengths over 2 s so they do not all end at once).

Per level it reports:
- streams sustained: streams that finished with a complete Final, no error, and exactly the
  expected words in order (the tone code makes every 80 ms frame count: a dropped,
  duplicated or reordered frame changes a word);
- added latency of the server path, p50/p99: the fake engine emits a word in the step that
  consumes frame `end + delay` of its stream (`end` = the word's end frame, `delay` = the
  engine delay), so the word can leave the engine at the earliest when the chunk holding
  that frame has been sent. Added latency = arrival of the Word at the client - send time of
  that chunk - the steps that frame needs (its place in the chunk + 1) at the engine's own
  mean step time (`stt_engine_step_seconds`: timed on the engine thread, so the hand-off to
  the engine thread and back counts as the server's). What remains is the server path:
  network in, frame assembly, waiting for the batch, routing, JSON, network out. Words
  emitted by the end-of-stream flush are not counted (they wait for no audio);
- CPU per stream: the server process's CPU time (/proc) over the streaming window, per
  stream, in % of one core; memory per stream: peak RSS minus RSS before the streams came;
- loop starved: share of that window the server's event-loop thread was ready to run but
  waited for a CPU (/proc/PID/schedstat): other processes on the machine, not the server;
- dropped or reordered frames (streams whose words are wrong; must be 0), client send lag
  (the load processes falling behind their own schedule invalidates a level).

Levels rise until one fails (p99 added > --p99-max-ms, a stream not sustained, or a word
lost) unless --keep-going; a failure while the machine was busy (load processes more than
25 ms behind, or the server's event loop waiting for a CPU more than 10% of the time) is
marked so and does not stop the run. Prints a table and writes JSON.

    python benchmarks/server_load.py --levels 50,100 --seconds 10          # quick
    python benchmarks/server_load.py --levels 50,100,200,500,1000,2000     # the full run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from stt.audio import float32_to_pcm16
from stt.constants import END_OF_STREAM_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from stt.engine.fake.tones import encode_text
from stt.tools.serve_process import serve_process

if __package__ in (None, ""):  # run as a script: its sibling modules are `benchmarks.*`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import cpu_model

_TEXTS = 64
"""Distinct stream texts (every word of every text is distinct); stream i uses text i % 64."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _letters(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, digit = divmod(n, 26)
        out = chr(ord("a") + digit) + out
    return out


_END_SPREAD_WORDS = 6
"""Text k is k % 6 words (0.4 s each) longer than the shortest, so streams end over 2 s:
1000 streams all closing within one chunk period is a burst no real service sees."""


def stream_text(i: int, seconds: float) -> str:
    """Four-letter words (5 frames with the gap) for about `seconds` (plus up to 2 s),
    unique to text i % 64."""
    k = i % _TEXTS
    words = max(1, int((seconds - 0.08) / (5 * 0.08))) + k % _END_SPREAD_WORDS
    return " ".join(_letters(k, 2) + _letters(n, 2) for n in range(words))


# -- the load processes -----------------------------------------------------------------------


@dataclass
class StreamOutcome:
    ok: bool = False
    error: str | None = None
    expected_words: int = 0
    words: int = 0
    wrong_words: bool = False
    latency_s: list[float] = field(default_factory=list)
    """Per word: arrival - send time of the chunk holding the frame that releases it."""
    steps_needed: list[int] = field(default_factory=list)
    """Per word: engine steps that frame needs after its chunk arrives (its place in the chunk + 1)."""
    send_lag_max_s: float = 0.0
    at_s: list[float] = field(default_factory=list)
    """Per word: arrival, in seconds since the stream's start."""


@dataclass(frozen=True)
class LoadPlan:
    url: str
    streams: list[int]
    seconds: float
    chunk_ms: int
    delay_frames: int
    connect_timeout_s: float
    deflate: bool = False


async def _run_stream(
    ws: ClientConnection, text: str, pcm: bytes, plan: LoadPlan, start: float, out: StreamOutcome
) -> None:
    expected = text.split()
    out.expected_words = len(expected)
    chunk_bytes = plan.chunk_ms * SAMPLE_RATE // 1000 * 2
    n_chunks = math.ceil(len(pcm) / chunk_bytes)
    sent_at = [0.0] * n_chunks
    chunk_samples = chunk_bytes // 2

    async def sender() -> None:
        for k in range(n_chunks):
            chunk = pcm[k * chunk_bytes : (k + 1) * chunk_bytes]
            due = start + (k * chunk_bytes + len(chunk)) / 2 / SAMPLE_RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            out.send_lag_max_s = max(out.send_lag_max_s, now - due)
            sent_at[k] = now
            await ws.send(chunk)
        await ws.send(END_OF_STREAM_BYTES)

    send_task = asyncio.create_task(sender())
    got: list[str] = []
    total_samples = len(pcm) // 2
    try:
        async for raw in ws:
            now = time.perf_counter()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "Word":
                got.append(message["text"])
                end_frame = round(message["end_s"] * SAMPLE_RATE / FRAME_SAMPLES)
                needed = (end_frame + plan.delay_frames + 1) * FRAME_SAMPLES
                if needed <= total_samples:
                    k = (needed - 1) // chunk_samples
                    if sent_at[k]:
                        out.latency_s.append(now - sent_at[k])
                        out.at_s.append(now - start)
                        first_frame = k * chunk_samples // FRAME_SAMPLES
                        out.steps_needed.append(needed // FRAME_SAMPLES - first_frame)
            elif kind == "Error":
                out.error = f"{message.get('code')}: {message.get('message')}"
            elif kind == "Final":
                if message.get("status") != "complete":
                    out.error = out.error or f"Final status {message.get('status')}"
                if message.get("transcript") != text:
                    out.wrong_words = True
    except ConnectionClosed as exc:
        out.error = out.error or f"connection closed: {exc}"
    finally:
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await send_task
    out.words = len(got)
    out.wrong_words = out.wrong_words or got != expected
    out.ok = out.error is None and not out.wrong_words and ws.close_code == 1000


async def _load(plan: LoadPlan, control: Connection) -> list[StreamOutcome]:
    texts = {i % _TEXTS: stream_text(i, plan.seconds) for i in plan.streams}
    pcm = {k: float32_to_pcm16(encode_text(t, lead_frames=1)) for k, t in texts.items()}
    outcomes = [StreamOutcome() for _ in plan.streams]
    sockets: list[ClientConnection | None] = [None] * len(plan.streams)
    gate = asyncio.Semaphore(64)

    async def open_one(j: int) -> None:
        async with gate:
            try:
                ws = await connect(
                    plan.url,
                    max_size=None,
                    ping_interval=None,
                    compression="deflate" if plan.deflate else None,
                    open_timeout=60,
                )
                ready = json.loads(await asyncio.wait_for(ws.recv(), plan.connect_timeout_s))
                if ready.get("type") != "Ready":
                    outcomes[j].error = f"refused: {ready.get('code')}"
                    await ws.close()
                    return
                sockets[j] = ws
            except (OSError, TimeoutError, WebSocketException) as exc:
                outcomes[j].error = f"connect: {type(exc).__name__}: {exc}"

    await asyncio.gather(*(open_one(j) for j in range(len(plan.streams))))
    loop = asyncio.get_running_loop()
    control.send("connected")
    wall_start = await loop.run_in_executor(None, control.recv)  # time.time() at which streams start
    base = time.perf_counter() + (wall_start - time.time())
    phase_s = plan.chunk_ms / 1000

    async def run_one(j: int) -> None:
        ws = sockets[j]
        if ws is None:
            return
        i = plan.streams[j]
        start = base + phase_s * (i % 97) / 97  # spread over one chunk period
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        try:
            await _run_stream(ws, texts[i % _TEXTS], pcm[i % _TEXTS], plan, start, outcomes[j])
        except (OSError, WebSocketException) as exc:
            outcomes[j].error = f"{type(exc).__name__}: {exc}"
        finally:
            await ws.close()

    await asyncio.gather(*(run_one(j) for j in range(len(plan.streams))))
    return outcomes


def _load_process(plan: LoadPlan, control: Connection) -> None:
    # uvloop: the load processes share the server's CPUs; the lighter they are, the less
    # they disturb what is measured (their CPU is reported beside the server's).
    outcomes = uvloop.run(_load(plan, control))
    control.send([asdict(o) for o in outcomes])


# -- the server process -----------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _threads_cpu_s(pid: int) -> dict[str, float]:
    """Per thread group, the event loop (the main thread) and the other threads (the
    engine's): CPU seconds, the kernel's share of them (`_kernel`: syscalls, page faults),
    and context switches (`_switches`, a count). Kernel time and switches are where machines
    of the same kind differ most (virtualisation, mitigations), so they are kept in the JSON."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "event_loop" if task.name == str(pid) else "other_threads"
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text().splitlines()
        except OSError:
            continue
        switches = sum(int(line.split()[1]) for line in status if "ctxt_switches:" in line)
        counters = {
            name: (int(fields[11]) + int(fields[12])) / _CLK_TCK,
            f"{name}_kernel": int(fields[12]) / _CLK_TCK,
            f"{name}_switches": float(switches),
        }
        for key, value in counters.items():
            out[key] = out.get(key, 0.0) + value
    return out


def _clients_cpu_s(pids: list[int]) -> float:
    """CPU seconds of the load processes together (they share the machine with the server)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _proc_cpu_s(pid)
    return total


def _run_delay_s(pid: int) -> float:
    """Time the server's event-loop thread spent runnable but waiting for a CPU (schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def serve(level: int, args: argparse.Namespace) -> Any:
    flags = [
        "--engine=fake",
        f"--fake-step-ms={args.step_ms}",
        f"--fake-delay-frames={args.delay_frames}",
        f"--slots={level}",
        "--connect-rate-per-s=0",
        "--max-messages-per-s=0",
        "--idle-timeout-s=300",
        "--drain-grace-s=1",
    ]
    with serve_process(flags, ready_timeout_s=60, stop_signal=signal.SIGINT, stop_timeout_s=20) as server:
        yield server.proc, server.ws_url


# -- one level --------------------------------------------------------------------------------


def _profile(pid: int, level: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy (if --profile-dir) on the server over the streaming window: raw folded stacks."""
    if args.profile_dir is None:
        return None
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    out = args.profile_dir / f"server-{level}.txt"
    duration = str(max(1, int(args.seconds - 2)))
    command = [str(py_spy), "record", "-p", str(pid), "-d", duration, "-f", "raw", "-o", str(out)]
    options = ["--rate", "250", "--nonblocking", "--threads"]
    return subprocess.Popen([*command, *options], stdout=subprocess.DEVNULL)


def _scrape(url: str) -> dict[str, float]:
    """Totals of the server's step histograms from /metrics."""
    import urllib.request

    http = url.replace("ws://", "http://").rsplit("/v1/", 1)[0]
    with urllib.request.urlopen(f"{http}/metrics", timeout=30) as response:
        text = response.read().decode()
    wanted = ("stt_engine_step_seconds_sum", "stt_engine_step_seconds_count", "stt_batch_rows_sum")
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_level(level: int, args: argparse.Namespace) -> dict[str, Any]:
    procs_n = max(1, min(args.max_procs, math.ceil(level / args.streams_per_proc)))
    ctx = mp.get_context("fork")
    load_before = os.getloadavg()[0]
    with serve(level, args) as (server, url):
        time.sleep(0.5)
        rss_idle = _proc_rss_mib(server.pid)
        metrics0 = _scrape(url)
        workers = []
        for p in range(procs_n):
            plan = LoadPlan(
                url,
                list(range(p, level, procs_n)),
                args.seconds,
                args.chunk_ms,
                args.delay_frames,
                connect_timeout_s=60,
                deflate=args.deflate,
            )
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_load_process, args=(plan, child), daemon=True)
            proc.start()
            workers.append((proc, parent))
        client_pids = [proc.pid for proc, _ in workers if proc.pid is not None]
        connect_started = time.monotonic()
        for _, pipe in workers:
            if not pipe.poll(300):
                raise RuntimeError("load processes did not connect in 300 s")
            pipe.recv()
        connect_s = time.monotonic() - connect_started
        start_wall = time.time() + 0.5
        for _, pipe in workers:
            pipe.send(start_wall)
        time.sleep(max(0.0, start_wall - time.time()))
        profiler = _profile(server.pid, level, args)
        # CPU over the steady part: after the starts have spread, until the first stream ends
        window_start = time.monotonic() + args.chunk_ms / 1000 + 0.5
        audio_s = (1 + 5 * len(stream_text(0, args.seconds).split())) * 0.08
        window_end = time.monotonic() + audio_s - 0.3
        cpu0 = cpu1 = None
        wait0 = wait1 = client0 = client1 = float("nan")
        threads0: dict[str, float] = {}
        threads1: dict[str, float] = {}
        rss_peak = rss_idle
        results: list[dict[str, Any]] = []
        pending = list(workers)
        while pending:
            now = time.monotonic()
            if cpu0 is None and now >= window_start:
                cpu0 = (now, _proc_cpu_s(server.pid))
                wait0 = _run_delay_s(server.pid)
                threads0 = _threads_cpu_s(server.pid)
                client0 = _clients_cpu_s(client_pids)
            if cpu1 is None and cpu0 is not None and now >= window_end:
                cpu1 = (now, _proc_cpu_s(server.pid))
                wait1 = _run_delay_s(server.pid)
                threads1 = _threads_cpu_s(server.pid)
                client1 = _clients_cpu_s(client_pids)
            rss_peak = max(rss_peak, _proc_rss_mib(server.pid))
            for item in list(pending):
                proc, pipe = item
                if pipe.poll(0):
                    results.extend(pipe.recv())
                    proc.join()
                    pending.remove(item)
            time.sleep(0.1)
        if profiler is not None:
            profiler.wait()
        metrics1 = _scrape(url)
    steps = metrics1["stt_engine_step_seconds_count"] - metrics0["stt_engine_step_seconds_count"]
    step_mean_s = (metrics1["stt_engine_step_seconds_sum"] - metrics0["stt_engine_step_seconds_sum"]) / max(
        1.0, steps
    )
    rows_mean = (metrics1["stt_batch_rows_sum"] - metrics0["stt_batch_rows_sum"]) / max(1.0, steps)
    outcomes = [StreamOutcome(**r) for r in results]
    latency = [a for o in outcomes for a in o.latency_s]
    # the engine's own compute: the steps the releasing frame needed, at the measured mean step time
    added = [a - n * step_mean_s for o in outcomes for a, n in zip(o.latency_s, o.steps_needed, strict=True)]
    lags = [o.send_lag_max_s for o in outcomes]
    cpu_pct = starved_pct = client_pct = None
    thread_pct: dict[str, float] = {}
    switches_per_s: dict[str, float] = {}
    if cpu0 is not None and cpu1 is not None and cpu1[0] > cpu0[0]:
        cpu_pct = 100 * (cpu1[1] - cpu0[1]) / (cpu1[0] - cpu0[0])
        starved_pct = 100 * (wait1 - wait0) / (cpu1[0] - cpu0[0])
        client_pct = 100 * (client1 - client0) / (cpu1[0] - cpu0[0])
        window_s = cpu1[0] - cpu0[0]
        for name, t in threads1.items():
            delta = t - threads0.get(name, 0.0)
            if name.endswith("_switches"):
                switches_per_s[name.removesuffix("_switches")] = round(delta / window_s)
            else:
                thread_pct[name] = round(100 * delta / window_s, 1)
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.error:
            key = o.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    by_second: dict[int, list[float]] = {}
    for o in outcomes:
        for a, n, t in zip(o.latency_s, o.steps_needed, o.at_s, strict=True):
            by_second.setdefault(int(t), []).append(a - n * step_mean_s)
    row = {
        "streams": level,
        "load_processes": procs_n,
        "connect_s": round(connect_s, 2),
        "sustained": sum(o.ok for o in outcomes),
        "wrong_streams": sum(o.wrong_words for o in outcomes),
        "words": sum(o.words for o in outcomes),
        "expected_words": sum(o.expected_words for o in outcomes),
        "engine_steps": int(steps),
        "step_mean_ms": _ms(step_mean_s),
        "rows_per_step": round(rows_mean, 1),
        "latency_p50_ms": _ms(_pct(latency, 50)),
        "latency_p99_ms": _ms(_pct(latency, 99)),
        "added_p50_ms": _ms(_pct(added, 50)),
        "added_p99_ms": _ms(_pct(added, 99)),
        "added_max_ms": _ms(max(added) if added else None),
        "server_cpu_pct": None if cpu_pct is None else round(cpu_pct, 1),
        "server_cpu_pct_by_thread": thread_pct,
        "server_context_switches_per_s": switches_per_s,
        "cpu_per_stream_pct": None if cpu_pct is None else round(cpu_pct / level, 3),
        "client_cpu_pct": None if client_pct is None else round(client_pct, 1),
        "rss_idle_mib": round(rss_idle, 1),
        "rss_peak_mib": round(rss_peak, 1),
        "rss_per_stream_kib": round((rss_peak - rss_idle) * 1024 / level, 1),
        "client_lag_p99_ms": _ms(_pct(lags, 99)),
        "errors": errors,
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "loop_starved_pct": None if starved_pct is None else round(starved_pct, 1),
        "added_p99_ms_by_second": {t: _ms(_pct(v, 99)) for t, v in sorted(by_second.items())},
    }
    p99 = row["added_p99_ms"]
    row["passed"] = (
        row["sustained"] == level and row["wrong_streams"] == 0 and p99 is not None and p99 <= args.p99_max_ms
    )
    lag, starved = row["client_lag_p99_ms"], row["loop_starved_pct"]
    row["machine_busy"] = bool(
        (lag is not None and lag > _BUSY_CLIENT_LAG_MS)
        or (starved is not None and starved > _BUSY_STARVED_PCT)
    )
    return row


_BUSY_CLIENT_LAG_MS = 25.0
_BUSY_STARVED_PCT = 10.0
"""Beyond these, other processes took the CPU from the load generator or the server: the
level's latency says more about the machine than about the server."""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _verdict(row: dict[str, Any]) -> str:
    if row["passed"]:
        return "pass"
    return "FAIL (machine busy)" if row["machine_busy"] else "FAIL"


def _cpu_split(row: dict[str, Any]) -> str:
    """Server CPU and its split: the event loop (the server's limit: one thread) and the rest
    (the engine thread; for the fake engine that is mostly decoding the tone code)."""
    total = row["server_cpu_pct"]
    if total is None:
        return "-"
    by = row["server_cpu_pct_by_thread"]
    return f"{total}% ({by.get('event_loop', 0.0)} + {by.get('other_threads', 0.0)})"


def _table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        "| streams | sustained | wrong streams | step ms (rows) | word latency p50 / p99 ms | "
        "added p50 / p99 ms | server CPU (loop + engine) | CPU / stream | client CPU | RSS / stream | "
        "client lag p99 | loop starved | load avg before / end | result |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def fmt(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    lines = [
        f"| {r['streams']} | {r['sustained']} | {r['wrong_streams']} | "
        f"{fmt(r['step_mean_ms'])} ({fmt(r['rows_per_step'])}) | "
        f"{fmt(r['latency_p50_ms'])} / {fmt(r['latency_p99_ms'])} | "
        f"{fmt(r['added_p50_ms'])} / {fmt(r['added_p99_ms'])} | {_cpu_split(r)} | "
        f"{fmt(r['cpu_per_stream_pct'], '%')} | {fmt(r['client_cpu_pct'], '%')} | "
        f"{fmt(r['rss_per_stream_kib'], ' KiB')} | "
        f"{fmt(r['client_lag_p99_ms'], ' ms')} | {fmt(r['loop_starved_pct'], '%')} | "
        f"{r['load_avg_1m_before']} / {r['load_avg_1m']} | {_verdict(r)} |"
        for r in rows
    ]
    note = (
        f"\nfake engine: step {args.step_ms:g} ms, delay {args.delay_frames} frames; "
        f"{args.seconds:g} s streams in {args.chunk_ms} ms chunks; pass = all sustained, "
        f"nothing lost, p99 added <= {args.p99_max_ms:g} ms; {os.cpu_count()} CPUs: {cpu_model()}. "
        "Server CPU: the server process (event loop + engine thread), in % of one core; client CPU: "
        "the load processes together, on the same machine; loop starved: share of the time the "
        "server's event loop was runnable but waiting for a CPU; load avg: the whole machine's, "
        "1 min, before the level's server started and at its end\n"
    )
    return head + "\n".join(lines) + "\n" + note


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="50,100,200,500,1000,2000", help="comma-separated stream counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--step-ms", type=float, default=5.0, help="fake engine step cost")
    parser.add_argument("--delay-frames", type=int, default=6, help="fake engine delay")
    parser.add_argument("--chunk-ms", type=int, default=480, help="client chunk (real-time paced)")
    parser.add_argument("--p99-max-ms", type=float, default=50.0, help="pass bound on p99 added latency")
    parser.add_argument("--streams-per-proc", type=int, default=500, help="streams per load process")
    parser.add_argument("--max-procs", type=int, default=4, help="load processes at most")
    parser.add_argument(
        "--deflate", action="store_true", help="clients offer permessage-deflate (browsers do)"
    )
    parser.add_argument("--keep-going", action="store_true", help="run every level even after a failure")
    parser.add_argument("--json-out", type=Path, default=Path("server_load.json"))
    parser.add_argument("--profile-dir", type=Path, default=None, help="py-spy the server into this dir")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for level in (int(x) for x in args.levels.split(",") if x.strip()):
        print(f"level {level} ...", file=sys.stderr, flush=True)
        row = run_level(level, args)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if not row["passed"] and not row["machine_busy"] and not args.keep_going:
            break
    table = _table(rows, args)
    print(table)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    machine = {"cpu_model": cpu_model(), "cpus": os.cpu_count()}
    report = {"settings": settings, "machine": machine, "levels": rows, "table": table}
    args.json_out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json_out}")
    return 0 if rows and all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
