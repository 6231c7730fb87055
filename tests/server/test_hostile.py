"""Hostile clients against a real server, beside honest streams that must stay exact."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stt.audio import float32_to_pcm16
from stt.constants import END_OF_STREAM_BYTES, SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.tools.client import StreamResult, stream_audio
from tests.conftest import LiveServer, live_server
from tests.rawws import RawWebSocket
from tests.test_concurrency import unique_texts

Outcome = tuple[str, int | None]
"""(error code or "-", close code) of one hostile client."""


async def hostile(url: str, items: list[bytes | str]) -> Outcome:
    async with connect(url, max_size=None, ping_interval=None) as ws:
        await ws.recv()  # Ready
        messages: list[dict[str, Any]] = []
        try:
            for item in items:
                await ws.send(item)
        except ConnectionClosed:
            pass  # the server may close before everything is sent; what it said is still buffered
        try:
            async for raw in ws:
                messages.append(json.loads(raw))
        except ConnectionClosed:
            pass
        errors = [m for m in messages if m["type"] == "Error"]
        return (errors[0]["code"] if errors else "-"), ws.close_code


def raw_invalid_utf8(server: LiveServer) -> Outcome:
    raw = RawWebSocket("127.0.0.1", _port(server))
    raw.send_frame(1, b"\xff\xfe\xfd not utf-8")
    _, code = raw.read_until_close()
    raw.close()
    return "-", code


def raw_half_open(server: LiveServer) -> Outcome:
    """Connects, sends one chunk, then goes silent without closing: the idle timeout ends it."""
    raw = RawWebSocket("127.0.0.1", _port(server))
    raw.send_frame(2, float32_to_pcm16(encode_text("half")))
    texts, code = raw.read_until_close()
    raw.close()
    errors = [json.loads(t) for t in texts if b'"Error"' in t]
    return (errors[0]["code"] if errors else "-"), code


def raw_never_reads(server: LiveServer) -> Outcome:
    """Streams plenty of words with a tiny receive buffer and never reads a byte."""
    raw = RawWebSocket("127.0.0.1", _port(server), rcvbuf=1024)
    audio = float32_to_pcm16(encode_text(" ".join(["ab"] * 150)))
    size = 11_520 * 2
    for offset in range(0, len(audio), size):
        raw.send_frame(2, audio[offset : offset + size])
        time.sleep(0.05)
    raw.send_frame(2, END_OF_STREAM_BYTES)
    time.sleep(1.0)
    raw.close()
    return "-", None


async def flood(url: str) -> Outcome:
    silence = float32_to_pcm16(np.zeros(30 * SAMPLE_RATE, np.float32))
    second = 2 * SAMPLE_RATE
    return await hostile(url, [silence[i : i + second] for i in range(0, len(silence), second)])


async def connect_disconnect(url: str, cycles: int, seed: int) -> int:
    rng = random.Random(seed)
    done = 0
    for _ in range(cycles):
        async with connect(url, ping_interval=None) as ws:
            ready = json.loads(await ws.recv())
            assert ready["type"] == "Ready"
            if rng.random() < 0.3:
                await ws.send(float32_to_pcm16(encode_text("x")))
            if rng.random() < 0.3:
                ws.transport.abort()  # vanish without a close handshake
        done += 1
    return done


def _port(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_hostile_suite_beside_five_honest_streams() -> None:
    texts = unique_texts(5, seed=11)
    engine = FakeEngine(slots=64, delay_frames=3, step_cost_s=0.002)
    settings = {"idle_timeout_s": 1.0, "max_backlog_s": 2.0, "connect_rate_per_s": 0, "send_timeout_s": 2.0}
    with live_server(engine, **settings) as server:
        url = server.ws_url

        async def main() -> tuple[list[StreamResult], dict[str, Any]]:
            honest = [
                stream_audio(url, encode_text(t, lead_frames=10), realtime=True, chunk_samples=3 * 1920)
                for t in texts
            ]
            attacks: dict[str, Any] = {
                "odd_bytes": hostile(url, [b"\x01\x02\x03"]),
                "empty_then_audio": hostile(url, [b"", b"\x00\x00" * 960]),
                "ten_mib": hostile(url, [b"\x00" * (10 << 20)]),
                "invalid_json": hostile(url, ["{not json"]),
                "unknown_control": hostile(url, ['{"type": "Reboot"}']),
                "binary_after_eos": hostile(
                    url, [float32_to_pcm16(encode_text("a")), END_OF_STREAM_BYTES, b"\0\0"]
                ),
                "flood": flood(url),
                "invalid_utf8": asyncio.to_thread(raw_invalid_utf8, server),
                "half_open": asyncio.to_thread(raw_half_open, server),
                "never_reads": asyncio.to_thread(raw_never_reads, server),
                "cycles": asyncio.gather(*(connect_disconnect(url, 250, seed) for seed in range(4))),
            }
            results = await asyncio.gather(*honest, *attacks.values())
            return list(results[: len(texts)]), dict(zip(attacks, results[len(texts) :], strict=True))

        honest, attacks = asyncio.run(main())
        for text, result in zip(texts, honest, strict=True):
            assert result.close_code == 1000, result.messages[-3:]
            assert result.transcript == text
            assert [w["text"] for w in result.words] == text.split()
        assert attacks["odd_bytes"] == ("bad_frame", 4400)
        assert attacks["empty_then_audio"] == ("bad_frame", 4400)
        assert attacks["ten_mib"] == ("too_large", 4413)
        assert attacks["invalid_json"] == ("bad_message", 4400)
        assert attacks["unknown_control"] == ("bad_message", 4400)
        assert attacks["binary_after_eos"] == ("bad_message", 4400)
        assert attacks["flood"] == ("too_fast", 4429)
        assert attacks["invalid_utf8"] == ("-", 1007)
        assert attacks["half_open"] == ("idle_timeout", 4408)
        assert sum(attacks["cycles"]) == 1000

        scheduler = server.app.state.scheduler
        deadline = time.monotonic() + 10
        while scheduler.used_slots and time.monotonic() < deadline:
            time.sleep(0.05)
        assert scheduler.used_slots == 0  # every hostile stream gave its slot back
        assert len(server.app.state.lifecycle) == 0
