"""Soak test: hours of honest and hostile traffic must not grow memory or lose a word.

Starts `stt serve --engine fake` (with a simulated step cost) in its own process and drives
it from this one: honest clients stream tone-coded sentences in real time, one after the
other, and check every transcript word for word; hostile clients cycle through attacks
(bad frames, garbage, floods, abrupt disconnects, silent half-open sockets, oversize
messages). Every `--sample-s` seconds the server's resident memory is read from /proc.

Reports memory over time (growth from the first to the last fifth of the run), lost words
(must be 0) and word latency per window (p50/p99; drift = last window's p99 minus the first),
prints a table and writes JSON. Exits 1 when a word was lost or memory grew beyond
--max-growth-pct.

    python benchmarks/soak.py --minutes 30 --json-out soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stt.audio import float32_to_pcm16
from stt.constants import END_OF_STREAM_BYTES, FRAME_SECONDS, SAMPLE_RATE
from stt.engine.fake.tones import ALPHABET, encode_text
from stt.tools.client import stream_audio
from stt.tools.serve_process import serve_process

ATTACKS = (
    "odd_bytes",
    "garbage_json",
    "unknown_type",
    "oversize",
    "flood",
    "vanish",
    "half_open",
    "after_eos",
)


@dataclass
class Window:
    """What happened in one sampling window."""

    t_s: float
    rss_mib: float
    streams_done: int = 0
    words: int = 0
    lost_words: int = 0
    attacks: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        out = asdict(self)
        del out["latencies"]
        out["latency_p50_ms"] = _pct(lat, 50) * 1000
        out["latency_p99_ms"] = _pct(lat, 99) * 1000
        return out


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sentence(rng: random.Random) -> str:
    return " ".join(
        "".join(rng.choice(ALPHABET[:26]) for _ in range(rng.randint(2, 6))) for _ in range(rng.randint(3, 8))
    )


class Soak:
    def __init__(self, args: argparse.Namespace, url: str, pid: int) -> None:
        self.args = args
        self.url = url
        self.pid = pid
        self.started = time.monotonic()
        self.windows = [Window(0.0, _rss_mib(pid))]
        self.errors: list[str] = []

    @property
    def window(self) -> Window:
        return self.windows[-1]

    def running(self) -> bool:
        return bool(time.monotonic() - self.started < self.args.minutes * 60)

    async def honest(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            text = _sentence(rng)
            result = await stream_audio(self.url, encode_text(text, lead_frames=2), realtime=True)
            window = self.window
            expected = text.split()
            got = [str(w["text"]) for w in result.words]
            window.streams_done += 1
            window.words += len(got)
            if got != expected or result.close_code != 1000:
                window.lost_words += max(1, len(set(expected) - set(got)))
                self.errors.append(f"honest stream {text!r}: got {got} close {result.close_code}")
            # Latency of the server path: from the moment the client had sent all the audio the
            # engine needs for a word (its end, the frame that shows it ended, and the model
            # delay) to the word's arrival.
            delay = float((result.ready or {}).get("delay_s", 0.0))
            for received in result.messages:
                if received.message.get("type") == "Word" and result.sent:
                    needed = float(received.message["end_s"]) + FRAME_SECONDS + delay
                    sent = result.audio_sent_at(needed)
                    window.latencies.append(
                        received.at_s - (sent if sent is not None else result.sent[-1][1])
                    )

    async def hostile(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running():
            await asyncio.sleep(rng.expovariate(self.args.attacks_per_s))
            attack = rng.choice(ATTACKS)
            with contextlib.suppress(ConnectionClosed, InvalidStatus, OSError, TimeoutError):
                await asyncio.wait_for(self._attack(attack, rng), 30)  # refusing an attacker is the point
            self.window.attacks += 1

    async def _attack(self, attack: str, rng: random.Random) -> None:
        if attack == "half_open":
            _, writer = await asyncio.open_connection("127.0.0.1", int(self.url.split(":")[2].split("/")[0]))
            await asyncio.sleep(rng.uniform(0.5, 3))  # a socket that never speaks
            writer.close()
            return
        async with connect(self.url, max_size=None, ping_interval=None) as ws:
            await ws.recv()
            if attack == "odd_bytes":
                await ws.send(b"\x01\x02\x03")
            elif attack == "garbage_json":
                await ws.send("{" * rng.randint(1, 1000))
            elif attack == "unknown_type":
                await ws.send(json.dumps({"type": "Shutdown"}))
            elif attack == "oversize":
                await ws.send(b"\x00" * (3 << 20))
            elif attack == "flood":
                chunk = float32_to_pcm16(np.zeros(2 * SAMPLE_RATE, np.float32))
                for _ in range(30):
                    await ws.send(chunk)
            elif attack == "vanish":
                await ws.send(float32_to_pcm16(encode_text(_sentence(rng))))
                ws.transport.abort()
                return
            elif attack == "after_eos":
                await ws.send(END_OF_STREAM_BYTES)
                await ws.send(b"\x00\x00" * 960)
            async for _ in ws:
                pass

    async def sample(self) -> None:
        while self.running():
            await asyncio.sleep(self.args.sample_s)
            t = time.monotonic() - self.started
            self.windows.append(Window(t, _rss_mib(self.pid)))
            w = self.windows[-2]
            lat = sorted(w.latencies)
            print(
                f"{w.t_s:8.0f}s rss={w.rss_mib:7.1f} MiB streams={w.streams_done:5d} words={w.words:6d} "
                f"lost={w.lost_words} attacks={w.attacks:4d} p99={_pct(lat, 99) * 1000:6.1f} ms",
                flush=True,
            )

    async def run(self) -> None:
        tasks = [self.honest(i) for i in range(self.args.honest)]
        tasks += [self.hostile(1000 + i) for i in range(self.args.hostile)]
        await asyncio.gather(self.sample(), *tasks)


def report(soak: Soak, args: argparse.Namespace) -> dict[str, Any]:
    windows = [w for w in soak.windows if w.streams_done or w.attacks]
    rss = [w.rss_mib for w in soak.windows]
    fifth = max(1, len(rss) // 5)
    warm = statistics.median(rss[1 : 1 + fifth] or rss[:1])
    last = statistics.median(rss[-fifth:])
    first_p99 = _pct(sorted(windows[0].latencies), 99) if windows else float("nan")
    last_p99 = _pct(sorted(windows[-1].latencies), 99) if windows else float("nan")
    all_lat = sorted(x for w in windows for x in w.latencies)
    summary = {
        "minutes": args.minutes,
        "honest_clients": args.honest,
        "hostile_clients": args.hostile,
        "step_ms": args.step_ms,
        "honest_streams": sum(w.streams_done for w in windows),
        "words": sum(w.words for w in windows),
        "lost_words": sum(w.lost_words for w in windows),
        "attacks": sum(w.attacks for w in windows),
        "rss_start_mib": round(warm, 1),
        "rss_end_mib": round(last, 1),
        "rss_growth_pct": round(100 * (last - warm) / warm, 2),
        "latency_p50_ms": round(_pct(all_lat, 50) * 1000, 1),
        "latency_p99_ms": round(_pct(all_lat, 99) * 1000, 1),
        "p99_first_window_ms": round(first_p99 * 1000, 1),
        "p99_last_window_ms": round(last_p99 * 1000, 1),
        "p99_drift_ms": round((last_p99 - first_p99) * 1000, 1),
        "errors": soak.errors[:20],
    }
    return {"summary": summary, "windows": [w.summary() for w in soak.windows]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--honest", type=int, default=20, help="concurrent honest clients")
    parser.add_argument("--hostile", type=int, default=4, help="concurrent hostile clients")
    parser.add_argument("--attacks-per-s", type=float, default=2.0, help="per hostile client")
    parser.add_argument("--step-ms", type=float, default=5.0, help="simulated engine step cost")
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--max-growth-pct", type=float, default=10.0)
    parser.add_argument("--json-out", type=Path, default=Path("soak.json"))
    args = parser.parse_args()

    flags = [
        "--engine=fake",
        f"--fake-step-ms={args.step_ms}",
        f"--slots={args.slots}",
        "--connect-rate-per-s=0",
        "--idle-timeout-s=2",
    ]
    with serve_process(flags, ready_timeout_s=30) as server:
        soak = Soak(args, server.ws_url, server.proc.pid)
        asyncio.run(soak.run())
    result = report(soak, args)
    s = result["summary"]
    print()
    print(
        "| minutes | honest streams | words | lost words | attacks | RSS start -> end (MiB) | growth | "
        "latency p50 / p99 | p99 drift |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {s['minutes']:g} | {s['honest_streams']} | {s['words']} | {s['lost_words']} | {s['attacks']} | "
        f"{s['rss_start_mib']} -> {s['rss_end_mib']} | {s['rss_growth_pct']:+.1f}% | "
        f"{s['latency_p50_ms']} / {s['latency_p99_ms']} ms | {s['p99_drift_ms']:+.1f} ms |"
    )
    args.json_out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json_out}")
    for error in s["errors"]:
        print("error:", error)
    ok = s["lost_words"] == 0 and s["rss_growth_pct"] <= args.max_growth_pct
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
