"""Hostile clients against a real server, beside honest streams that must stay exact."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import select
from typing import Any

import msgpack
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stt.audio import float32_to_pcm16
from stt.constants import END_OF_STREAM_BYTES, SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.protocols.kyutai import PATH as KYUTAI_PATH
from stt.tools.client import StreamResult, stream_audio
from tests.helpers import LiveServer, hostile_client, live_server, unique_texts
from tests.rawws import RawWebSocket

Outcome = tuple[str, int | None]
"""(error code or "-", close code) of one hostile client."""


async def hostile(url: str, items: list[bytes | str]) -> Outcome:
    messages, close_code = await hostile_client(url, items)
    errors = [m for m in messages if m["type"] == "Error"]
    return (errors[0]["code"] if errors else "-"), close_code


async def kyutai_hostile(url: str, items: list[bytes | str]) -> Outcome:
    """A moshi-server protocol client: its Error's code (the message's prefix), close code."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
        messages: list[dict[str, Any]] = []
        try:
            for item in items:
                await ws.send(item)
        except ConnectionClosed:
            pass
        try:
            async for raw in ws:
                messages.append(msgpack.unpackb(raw))
        except ConnectionClosed:
            pass
        errors = [m["message"].split(":", 1)[0] for m in messages if m["type"] == "Error"]
        return (errors[0] if errors else "-"), ws.close_code


def kyutai_attacks(url: str) -> dict[str, Any]:
    def pack(message: Any) -> bytes:
        data: bytes = msgpack.packb(message, use_bin_type=True)
        return data

    audio = pack({"type": "Audio", "pcm": [0.0] * 1920})
    return {
        "k_not_msgpack": kyutai_hostile(url, [audio, b"\xc1\xc1 not msgpack"]),
        "k_truncated": kyutai_hostile(url, [pack({"type": "Audio", "pcm": [0.5] * 100})[:-7]]),
        "k_not_a_map": kyutai_hostile(url, [pack([1, 2, 3])]),
        "k_unknown_type": kyutai_hostile(url, [pack({"type": "Reboot"})]),
        "k_text_frame": kyutai_hostile(url, ['{"type": "Audio", "pcm": []}']),
        "k_pcm_strings": kyutai_hostile(url, [pack({"type": "Audio", "pcm": ["loud"] * 10})]),
        "k_pcm_nan": kyutai_hostile(url, [pack({"type": "Audio", "pcm": [float("nan")] * 10})]),
        "k_pcm_not_list": kyutai_hostile(url, [pack({"type": "Audio", "pcm": b"\x00\x01"})]),
        "k_marker_id": kyutai_hostile(url, [audio, pack({"type": "Marker", "id": "zero"})]),
        "k_bad_opus": kyutai_hostile(url, [pack({"type": "OggOpus", "data": b"not an ogg page" * 8})]),
        "k_too_long": kyutai_hostile(url, [pack({"type": "Audio", "pcm": [0.0] * 5 * 24_000})]),
    }


KYUTAI_OUTCOMES = {
    "k_not_msgpack": ("bad_message", 4400),
    "k_truncated": ("bad_message", 4400),
    "k_not_a_map": ("bad_message", 4400),
    "k_unknown_type": ("bad_message", 4400),
    "k_text_frame": ("bad_message", 4400),
    "k_pcm_strings": ("bad_frame", 4400),
    "k_pcm_nan": ("bad_frame", 4400),
    "k_pcm_not_list": ("bad_frame", 4400),
    "k_marker_id": ("bad_message", 4400),
    "k_bad_opus": ("bad_frame", 4400),
    "k_too_long": ("too_large", 4413),
}


async def realtime_hostile(url: str, items: list[bytes | str]) -> Outcome:
    """An OpenAI Realtime client: the code of its first error event, and the close code if
    the server closed (None when the session stayed open and the client ended it)."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        first = json.loads(await ws.recv())
        if first["type"] == "error":  # refused before a session
            with contextlib.suppress(ConnectionClosed):
                await ws.recv()
            return first["error"]["code"], ws.close_code
        try:
            for item in items:
                await ws.send(item)
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "error":
                    code = event["error"]["code"]
                    break
        except ConnectionClosed:
            return "-", ws.close_code
        # Events are handled in order: a session the bad event closed never answers this.
        try:
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            cleared = json.loads(await ws.recv())
        except ConnectionClosed:
            return code, ws.close_code
        assert cleared["type"] == "input_audio_buffer.cleared", cleared  # still serving
        return code, None


def realtime_attacks(base: str) -> dict[str, Any]:
    url = base + "/v1/realtime?intent=transcription"

    def append(audio: str) -> str:
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def update(session: dict[str, Any]) -> str:
        return json.dumps({"type": "session.update", "session": session})

    pcm = base64.b64encode(bytes(4800)).decode()
    return {
        "r_not_json": realtime_hostile(url, ["{not json"]),
        "r_bad_base64": realtime_hostile(url, [append("!!!not base64!!!")]),
        "r_odd_pcm": realtime_hostile(url, [append(base64.b64encode(b"\x01\x02\x03").decode())]),
        "r_unknown_event": realtime_hostile(url, [json.dumps({"type": "response.create"})]),
        "r_commit_first": realtime_hostile(url, [json.dumps({"type": "input_audio_buffer.commit"})]),
        "r_pcmu": realtime_hostile(
            url, [update({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})]
        ),
        "r_language_late": realtime_hostile(
            url,
            [
                append(pcm),
                update({"type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}}),
            ],
        ),
        "r_binary": realtime_hostile(url, [b"\x00\x00"]),
        "r_too_large": realtime_hostile(url, [append(base64.b64encode(bytes(8 * 48_000)).decode())]),
        "r_wrong_intent": realtime_hostile(base + "/v1/realtime?model=gpt-realtime", []),
    }


REALTIME_OUTCOMES = {
    "r_not_json": ("invalid_json", None),
    "r_bad_base64": ("invalid_value", None),
    "r_odd_pcm": ("invalid_value", None),
    "r_unknown_event": ("unknown_event", None),
    "r_commit_first": ("input_audio_buffer_commit_empty", None),
    "r_pcmu": ("invalid_value", None),
    "r_language_late": ("invalid_value", None),
    "r_binary": ("invalid_event", None),
    "r_too_large": ("too_large", 4413),
    "r_wrong_intent": ("unsupported_intent", 4400),
}


def raw_invalid_utf8(server: LiveServer) -> Outcome:
    raw = RawWebSocket("127.0.0.1", server.port)
    raw.send_frame(1, b"\xff\xfe\xfd not utf-8")
    _, code = raw.read_until_close()
    raw.close()
    return "-", code


def raw_half_open(server: LiveServer) -> Outcome:
    """Connects, sends one chunk, then goes silent without closing: the idle timeout ends it."""
    raw = RawWebSocket("127.0.0.1", server.port)
    raw.send_frame(2, float32_to_pcm16(encode_text("half")))
    texts, code = raw.read_until_close()
    raw.close()
    errors = [json.loads(t) for t in texts if b'"Error"' in t]
    return (errors[0]["code"] if errors else "-"), code


NEVER_READ = "ab cd ef"
"""Under a second of audio (below the max_backlog_s of the suite) with few words: all the
server says fits in the socket buffers, so it never waits on this client to read."""


def raw_never_reads(server: LiveServer) -> Outcome:
    """Sends its audio and the end marker, then neither reads nor answers the close handshake.
    The server finishes the stream anyway and, after its close timeout, drops the connection;
    only then does the client read what was said: all of it."""
    raw = RawWebSocket("127.0.0.1", server.port)
    raw.send_frame(2, float32_to_pcm16(encode_text(NEVER_READ)))
    raw.send_frame(2, END_OF_STREAM_BYTES)
    watcher = select.poll()
    watcher.register(raw.sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    if not watcher.poll(60_000):  # the peer's FIN shows without reading a byte
        raw.close()
        return "still open after 60 s", None
    texts, code = raw.read_until_close()
    raw.close()
    messages = [json.loads(t) for t in texts]
    words = [m["text"] for m in messages if m["type"] == "Word"]
    finals = [m for m in messages if m["type"] == "Final"]
    if words != NEVER_READ.split() or len(finals) != 1:
        return f"lost output: {messages}", code
    return finals[0]["status"], code


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
                "bad_numerals": hostile(url, ['{"type": "Configure", "numerals": "roman"}']),
                "binary_after_eos": hostile(
                    url, [float32_to_pcm16(encode_text("a")), END_OF_STREAM_BYTES, b"\0\0"]
                ),
                "flood": flood(url),
                "invalid_utf8": asyncio.to_thread(raw_invalid_utf8, server),
                "half_open": asyncio.to_thread(raw_half_open, server),
                "never_reads": asyncio.to_thread(raw_never_reads, server),
                "cycles": asyncio.gather(*(connect_disconnect(url, 250, seed) for seed in range(4))),
                **kyutai_attacks(server.url.replace("http://", "ws://") + KYUTAI_PATH),
                **realtime_attacks(server.url.replace("http://", "ws://")),
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
        assert attacks["bad_numerals"] == ("bad_message", 4400)
        assert attacks["binary_after_eos"] == ("bad_message", 4400)
        assert attacks["flood"] == ("too_fast", 4429)
        assert attacks["invalid_utf8"] == ("-", 1007)
        assert attacks["half_open"] == ("idle_timeout", 4408)
        assert attacks["never_reads"] == ("complete", 1000)
        assert sum(attacks["cycles"]) == 1000
        assert {name: attacks[name] for name in KYUTAI_OUTCOMES} == KYUTAI_OUTCOMES
        assert {name: attacks[name] for name in REALTIME_OUTCOMES} == REALTIME_OUTCOMES

        server.wait_for_no_streams()
        assert server.app.state.scheduler.used_slots == 0  # every hostile stream gave its slot back
