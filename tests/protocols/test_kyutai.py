"""The moshi-server protocol at /api/asr-streaming, against a real server with the fake engine."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2 as httpx
import msgpack
import numpy as np
import pytest
import sphn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.protocols.kyutai import PATH, PAUSE_HEADS
from tests.helpers import LiveServer, live_server
from tests.protocols.kyutai_clients import FRAME_SIZE, SAMPLE_RATE, UnmuteReader, file_script, pack


def kyutai_url(server: LiveServer, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + PATH + query


async def read_all(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    try:
        async for raw in ws:
            assert isinstance(raw, bytes), "every server message is a binary msgpack frame"
            messages.append(msgpack.unpackb(raw, raw=False))
    except ConnectionClosed:
        pass
    return messages


async def until_marker(ws: ClientConnection, marker: int) -> list[dict[str, Any]]:
    messages = []
    async for raw in ws:
        message = msgpack.unpackb(raw, raw=False)
        messages.append(message)
        if message == {"type": "Marker", "id": marker}:
            return messages
    raise AssertionError(f"closed before Marker {marker}: {messages[-3:]}")


def words_of(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages if m["type"] == "Word"]


def test_ready_words_endwords_steps_and_the_marker_after_the_words() -> None:
    engine = FakeEngine(slots=4, delay_frames=3)
    with live_server(engine) as server:

        async def main() -> list[dict[str, Any]]:
            async with connect(kyutai_url(server)) as ws:
                assert msgpack.unpackb(await ws.recv()) == {"type": "Ready"}
                audio = encode_text("hello kyutai world")
                for i in range(0, audio.size, 1000):  # any length: the server reframes
                    await ws.send(pack({"type": "Audio", "pcm": audio[i : i + 1000].tolist()}))
                await ws.send(pack({"type": "Marker", "id": 42}))
                for _ in range(3):  # Kyutai's clients keep sending silence after a Marker
                    await ws.send(pack({"type": "Audio", "pcm": [0.0] * FRAME_SIZE}))
                return await until_marker(ws, 42)

        messages = asyncio.run(main())
    assert words_of(messages) == ["hello", "kyutai", "world"]
    kinds = [m["type"] for m in messages if m["type"] != "Step"]
    assert kinds == ["Word", "EndWord"] * 3 + ["Marker"]
    words = [m for m in messages if m["type"] in ("Word", "EndWord")]
    for word, end in zip(words[::2], words[1::2], strict=True):
        assert 0 <= word["start_time"] < end["stop_time"]
    steps = [m for m in messages if m["type"] == "Step"]
    assert [s["step_idx"] for s in steps] == list(range(len(steps)))
    assert all(len(s["prs"]) == PAUSE_HEADS and s["buffered_pcm"] >= 0 for s in steps)
    # Every frame of the audio before the Marker and of the flush after it was stepped before
    # the echo (the Step of the flush's last frame follows the echo).
    frames = -(-encode_text("hello kyutai world").size // FRAME_SIZE)
    assert len(steps) == frames + engine.info.flush_frames - 1


def test_unmute_reads_speech_during_the_words_and_a_pause_after_them() -> None:
    engine = FakeEngine(slots=2, delay_frames=2, pause_frames=5)
    with live_server(engine) as server:

        async def main() -> tuple[list[float], list[float]]:
            reader = UnmuteReader()
            before: list[float] = []  # Unmute's pause estimate at each Step, before / after a word
            after: list[float] = []
            heard = False
            async with connect(kyutai_url(server)) as ws:
                await ws.recv()  # Ready
                lead = np.zeros(14 * FRAME_SIZE, np.float32)  # past the 12 Steps Unmute ignores
                audio = np.concatenate([lead, encode_text("turn one"), np.zeros(20 * FRAME_SIZE, np.float32)])
                for i in range(0, audio.size, FRAME_SIZE):
                    await ws.send(pack({"type": "Audio", "pcm": audio[i : i + FRAME_SIZE].tolist()}))
                await ws.send(pack({"type": "Marker", "id": 1}))
                async for raw in ws:
                    message = msgpack.unpackb(raw)
                    if message["type"] == "Step":
                        reader.step(message)
                        (after if heard else before).append(reader.pause)
                    elif message["type"] == "Word":
                        heard = True
                    elif message["type"] == "Marker":
                        break
            return before, after

        before, after = asyncio.run(main())
    assert before and min(before) > 0.6, "nobody speaks before the first word"
    assert after and min(after) < 0.4, "Unmute sees speech while the words come"
    assert after[-1] > 0.6, "and the end of the turn once the engine predicts it"


def test_a_client_a_thousand_times_faster_than_real_time_is_slowed_and_completes() -> None:
    # Each step costs 2 ms, so 30 s of audio (375 frames) take >= 0.75 s to step while the
    # client sends it in a few ms: far above the 1 s backlog limit without backpressure.
    engine = FakeEngine(slots=2, delay_frames=3, step_cost_s=0.002)
    text = " ".join(f"w{i}" for i in range(60))
    # Half a frame of lead-in puts the tone code back on frame boundaries after the script's
    # 1 s (12.5 frames) of silence.
    audio = np.concatenate([np.zeros(FRAME_SIZE // 2, np.float32), encode_text(text)])
    assert audio.size > 10 * SAMPLE_RATE
    with live_server(engine, max_backlog_s=1.0, max_messages_per_s=100) as server:
        run = asyncio.run(file_script(kyutai_url(server), audio, rtf=1000))
        metrics = httpx.get(server.url + "/metrics").text
    assert run.marker_seen and run.other == [{"type": "Ready"}], run.other
    assert run.transcript == text, run.transcript
    most = max(s["buffered_pcm"] for s in run.steps)
    # The backlog stays near its limit: one more message (at most 1 s here) on top of it.
    assert most <= 2 * SAMPLE_RATE + FRAME_SIZE, most
    assert 'stt_errors_total{code="too_fast"}' not in metrics
    assert 'stt_errors_total{code="rate_limited"}' not in metrics


def test_ogg_opus_is_decoded() -> None:
    engine = FakeEngine(slots=2, delay_frames=3)
    text = "opus works"
    audio = np.concatenate([encode_text(text), np.zeros(4 * FRAME_SIZE, np.float32)])
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    pages = [writer.append_pcm(audio[i : i + FRAME_SIZE]) for i in range(0, audio.size, FRAME_SIZE)]
    with live_server(engine) as server:

        async def main() -> list[dict[str, Any]]:
            async with connect(kyutai_url(server)) as ws:
                await ws.recv()
                for page in pages:
                    if page:
                        await ws.send(msgpack.packb({"type": "OggOpus", "data": page}, use_bin_type=True))
                await ws.send(pack({"type": "Marker", "id": 3}))
                return await until_marker(ws, 3)

        assert words_of(asyncio.run(main())) == text.split()


def test_keys_by_header_or_auth_id_and_refusals_in_msgpack() -> None:
    engine = FakeEngine(slots=1, delay_frames=2)
    with live_server(engine, api_keys="public_token", connect_rate_per_s=0) as server:

        async def main() -> tuple[Any, Any, int, list[dict[str, Any]], int | None]:
            header = {"kyutai-api-key": "public_token"}
            async with connect(kyutai_url(server), additional_headers=header) as a:
                by_header = msgpack.unpackb(await a.recv())
                # The one slot is taken: the next stream is refused in the protocol's own words.
                async with connect(kyutai_url(server, "?auth_id=public_token")) as b:
                    refused = await read_all(b)
                    code = b.close_code
            async with connect(kyutai_url(server, "?auth_id=public_token")) as c:
                by_query = msgpack.unpackb(await c.recv())
            with pytest.raises(InvalidStatus) as denied:
                async with connect(kyutai_url(server, "?auth_id=wrong")):
                    pass
            return by_header, by_query, denied.value.response.status_code, refused, code

        by_header, by_query, status, refused, code = asyncio.run(main())
    assert by_header == by_query == {"type": "Ready"}
    assert status == 401
    assert len(refused) == 1 and refused[0]["type"] == "Error"
    assert refused[0]["message"].startswith("over_capacity:")
    assert code == 4503
