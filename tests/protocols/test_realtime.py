"""OpenAI Realtime transcription at /v1/realtime, with the fake engine behind a real server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from stt.audio import float32_to_pcm16
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from tests.helpers import LiveServer, live_server
from tests.protocols.realtime_clients import session_config, transcribe

FRAME = 1920
PCMU = {"type": "audio/pcmu"}


def silence(frames: int) -> np.ndarray:
    return np.zeros(frames * FRAME, np.float32)


def realtime_url(server: LiveServer, query: str = "?intent=transcription") -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime" + query


async def events_until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    events = []
    async for raw in ws:
        event = json.loads(raw)
        events.append(event)
        if event["type"] == kind:
            return events
    raise AssertionError(f"closed before {kind}: {events[-3:]}")


def test_sdk_manual_commit_gets_deltas_then_the_completed_transcript() -> None:
    engine = FakeEngine(slots=2, delay_frames=3, pause_frames=4)
    audio = encode_text("hello realtime world")
    with live_server(engine, api_keys="public_token") as server:
        run = asyncio.run(transcribe(server.url, audio, turn_detection=None, items=1))
    assert run.types[:2] == ["session.created", "session.updated"]
    created = run.events[0].session
    assert created.type == "transcription"
    assert created.audio.input.turn_detection.type == "server_vad"  # the default where the engine can
    updated = run.events[1].session
    assert updated.audio.input.turn_detection is None
    assert updated.audio.input.transcription.model == "gpt-4o-transcribe"
    (item,) = run.items.values()
    assert item.deltas == ["hello", " realtime", " world"]
    assert item.completed == "hello realtime world"
    assert "input_audio_buffer.speech_started" not in run.types  # no turn detection: no VAD events
    committed = run.types.index("input_audio_buffer.committed")
    assert committed < run.types.index("conversation.item.input_audio_transcription.completed")


def test_sdk_server_vad_makes_one_item_per_utterance() -> None:
    engine = FakeEngine(slots=2, delay_frames=3, pause_frames=5)
    audio = np.concatenate([encode_text("first turn"), silence(12), encode_text("second turn"), silence(12)])
    with live_server(engine) as server:
        run = asyncio.run(
            transcribe(server.url, audio, turn_detection={"type": "server_vad"}, items=2, commit=False)
        )
    assert run.completed() == ["first turn", "second turn"]
    for kind in ("speech_started", "speech_stopped", "committed"):
        assert run.types.count(f"input_audio_buffer.{kind}") == 2, run.types
    first_item = next(iter(run.items))
    stopped = [e for e in run.events if e.type == "input_audio_buffer.speech_stopped"]
    assert stopped[0].item_id == first_item
    committed = [e for e in run.events if e.type == "input_audio_buffer.committed"]
    assert committed[1].previous_item_id == committed[0].item_id


def test_semantic_vad_rides_on_the_engine_end_of_turn_and_clear_drops_audio() -> None:
    engine = FakeEngine(slots=2, delay_frames=3, pause_frames=5)
    with live_server(engine) as server:

        async def main() -> list[dict[str, Any]]:
            async with connect(realtime_url(server)) as ws:
                await ws.recv()  # session.created
                session = session_config({"type": "semantic_vad", "eagerness": "high"})
                await ws.send(json.dumps({"type": "session.update", "session": session}))
                await events_until(ws, "session.updated")
                dropped = float32_to_pcm16(encode_text("dropped"))
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(dropped)}))
                await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
                await events_until(ws, "input_audio_buffer.cleared")
                kept = float32_to_pcm16(np.concatenate([encode_text("kept"), silence(10)]))
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(kept)}))
                return await events_until(ws, "conversation.item.input_audio_transcription.completed")

        events = asyncio.run(main())
    assert events[-1]["transcript"] == "kept"
    assert [e["delta"] for e in events if e["type"].endswith(".delta")] == ["kept"]


def test_errors_that_keep_the_session_open_and_one_that_closes_it() -> None:
    engine = FakeEngine(slots=2, delay_frames=3)  # no end-of-turn prediction
    with live_server(engine) as server:

        async def main() -> tuple[list[dict[str, Any]], int | None]:
            async with connect(realtime_url(server)) as ws:
                created = json.loads(await ws.recv())
                assert created["session"]["audio"]["input"]["turn_detection"] is None
                bad = [
                    "{not json",
                    json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}),
                    json.dumps({"type": "input_audio_buffer.append", "audio": _b64(b"\x00\x01\x02")}),
                    json.dumps({"type": "input_audio_buffer.commit", "event_id": "mine"}),
                    json.dumps({"type": "response.create"}),
                    json.dumps({"type": "session.update", "session": session_config({"type": "server_vad"})}),
                    json.dumps({"type": "session.update", "session": {"type": "realtime"}}),
                    json.dumps(
                        {
                            "type": "session.update",
                            "session": {
                                "type": "transcription",
                                "audio": {"input": {"format": {"type": "audio/pcmu"}}},
                            },
                        }
                    ),
                ]
                for message in bad:
                    await ws.send(message)
                await ws.send(b"\x00\x00")
                # Still open: audio after all that is transcribed.
                audio = float32_to_pcm16(encode_text("still here"))
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(audio)}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                events = await events_until(ws, "conversation.item.input_audio_transcription.completed")
                # The language is fixed once audio flowed: an error, and the session goes on.
                late = session_config(None, language="fr")
                await ws.send(json.dumps({"type": "session.update", "session": late}))
                events += await events_until(ws, "error")
                # An append over the chunk limit breaks the stream's limits: error, then close.
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": _b64(bytes(4 * 48_000 * 2))})
                )
                try:
                    async for raw in ws:
                        events.append(json.loads(raw))
                except ConnectionClosed:
                    pass
                return events, ws.close_code

        events, close_code = asyncio.run(main())
    errors = [e["error"] for e in events if e["type"] == "error"]
    codes = [e["code"] for e in errors]
    assert codes == [
        "invalid_json",
        "invalid_value",
        "invalid_value",
        "input_audio_buffer_commit_empty",
        "unknown_event",
        "invalid_value",
        "invalid_value",
        "invalid_value",
        "invalid_event",
        "invalid_value",
        "too_large",
    ], errors
    assert errors[3]["event_id"] == "mine"
    assert [e["transcript"] for e in events if e["type"].endswith(".completed")] == ["still here"]
    assert close_code == 4413


def test_intent_and_key_are_required() -> None:
    engine = FakeEngine(slots=2, delay_frames=3)
    with live_server(engine, api_keys="sk-test") as server:

        async def main() -> tuple[dict[str, Any], int | None, int]:
            bearer = {"Authorization": "Bearer sk-test"}
            async with connect(realtime_url(server, "?model=gpt-realtime"), additional_headers=bearer) as ws:
                refused = json.loads(await ws.recv())
                with contextlib.suppress(ConnectionClosed):
                    await ws.recv()
                code = ws.close_code
            with pytest.raises(InvalidStatus) as denied:
                async with connect(realtime_url(server)):
                    pass
            return refused, code, denied.value.response.status_code

        refused, code, status = asyncio.run(main())
    assert refused["type"] == "error" and refused["error"]["code"] == "unsupported_intent"
    assert code == 4400
    assert status == 401


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
