"""Many clients at once against a real uvicorn server: every stream gets only its own words."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from websockets.asyncio.client import connect

from stt.audio import float32_to_pcm16
from stt.constants import END_OF_STREAM_BYTES
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.tools.client import StreamResult, stream_audio
from tests.helpers import MessageWatch, hostile_client, live_server, unique_texts


def test_twenty_concurrent_clients_each_get_only_their_own_words() -> None:
    texts = unique_texts(20)
    engine = FakeEngine(slots=24, delay_frames=6, step_cost_s=0.002)
    with live_server(engine) as server:

        async def one(i: int, text: str) -> StreamResult:
            chunk = random.Random(i).choice([960, 1920, 5000, 11520, 24000])
            return await stream_audio(
                server.ws_url,
                encode_text(text, lead_frames=i % 3),
                chunk_samples=chunk,
                end_marker="EOS" if i % 2 else "CloseStream",
                realtime=i % 4 == 0,
            )

        async def main() -> list[StreamResult]:
            return await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))

        results = asyncio.run(main())
    all_words = {w for t in texts for w in t.split()}
    for text, result in zip(texts, results, strict=True):
        assert result.close_code == 1000, result.messages
        assert result.transcript == text
        assert [w["text"] for w in result.words] == text.split()  # no extra, none lost, in order
        foreign = {w["text"] for w in result.words} & (all_words - set(text.split()))
        assert not foreign
    steps_with_many = engine.rows / max(engine.steps, 1)
    assert steps_with_many > 1.5  # streams really shared steps


@pytest.mark.parametrize(
    ("payload", "code", "close_code"),
    [
        ([b"\x01\x02\x03\x04\x05"], "bad_frame", 4400),
        (["{not json"], "bad_message", 4400),
        (['{"type": "Dance"}'], "bad_message", 4400),
        ([b"\x00" * ((1 << 20) + 2)], "too_large", 4413),
        ([float32_to_pcm16(encode_text("x")), END_OF_STREAM_BYTES, b"\x00\x00"], "bad_message", 4400),
    ],
)
def test_bad_clients_get_their_error_while_honest_streams_are_undisturbed(
    payload: list[bytes | str], code: str, close_code: int
) -> None:
    texts = unique_texts(5, seed=3)
    engine = FakeEngine(slots=8, delay_frames=3, step_cost_s=0.002)
    with live_server(engine) as server:

        async def main() -> tuple[list[StreamResult], tuple[list[dict[str, object]], int | None]]:
            honest = [
                stream_audio(server.ws_url, encode_text(t), chunk_samples=1920, realtime=True) for t in texts
            ]
            results = await asyncio.gather(*honest, hostile_client(server.ws_url, payload))
            return list(results[:-1]), results[-1]

        results, (messages, closed) = asyncio.run(main())
    assert closed == close_code
    errors = [m for m in messages if m["type"] == "Error"]
    assert errors and errors[0]["code"] == code
    for text, result in zip(texts, results, strict=True):
        assert result.close_code == 1000 and result.transcript == text


def test_client_vanishing_mid_stream_does_not_disturb_others() -> None:
    engine = FakeEngine(slots=4, delay_frames=3)
    with live_server(engine) as server:

        async def vanish() -> None:
            ws = await connect(server.ws_url)
            await ws.recv()
            await ws.send(float32_to_pcm16(encode_text("abandoned words here")))
            ws.transport.abort()  # no close handshake, like a dropped network

        async def main() -> StreamResult:
            _, result = await asyncio.gather(
                vanish(), stream_audio(server.ws_url, encode_text("survivor"), realtime=True)
            )
            return result

        result = asyncio.run(main())
        assert result.transcript == "survivor"
        server.wait_for_no_streams()  # the server noticed the vanished client and ended its session
        assert server.app.state.scheduler.used_slots == 0


def test_over_capacity_on_a_real_server() -> None:
    engine = FakeEngine(slots=2, delay_frames=1)
    with live_server(engine) as server:

        async def main() -> list[StreamResult]:
            audio = encode_text("hold the slot", lead_frames=5)
            admitted = [MessageWatch("Ready") for _ in range(2)]
            holders = [stream_audio(server.ws_url, audio, realtime=True, on_message=a) for a in admitted]
            task = asyncio.gather(*holders)
            for watch in admitted:
                await watch.wait()  # both hold their slot
            refused = await stream_audio(server.ws_url, np.zeros(1920, np.float32))
            return [*(await task), refused]

        first, second, refused = asyncio.run(main())
    assert first.transcript == second.transcript == "hold the slot"
    assert refused.close_code == 4503
    assert refused.error is not None and refused.error["code"] == "over_capacity"
    assert refused.ready is None
