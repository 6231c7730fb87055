"""The app in-process: message formats, controls, errors and close codes, HTTP routes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from stt.audio import float32_to_pcm16, pcm16_to_float32
from stt.constants import CHUNK_BYTES, END_OF_STREAM_BYTES, FRAME_SAMPLES, PROTOCOL_VERSION, SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.engine.interface import Engine
from tests.fakes import FailingEngine, LateAckEngine, MeasuredEngine
from tests.helpers import CLOSE, FINALIZE, KEEP, app_client, collect, expect_error, pcm, wait_for_no_streams


def stream(
    client: TestClient,
    data: bytes,
    *,
    chunk: int = CHUNK_BYTES,
    end: bytes | str = CLOSE,
    before: list[str] | None = None,
    path: str = "/v1/stream",
) -> tuple[list[dict[str, Any]], int]:
    with client.websocket_connect(path) as ws:
        ready = ws.receive_json()
        assert ready["type"] == "Ready"
        for text in before or []:
            ws.send_text(text)
        for i in range(0, len(data), chunk):
            ws.send_bytes(data[i : i + chunk])
        if isinstance(end, bytes):
            ws.send_bytes(end)
        else:
            ws.send_text(end)
        messages, code = collect(ws)
    return [ready, *messages], code


@pytest.fixture
def client() -> Any:
    with app_client(FakeEngine(slots=4, delay_frames=3)) as c:
        yield c


@pytest.fixture
def any_chunks() -> Any:
    """A server that accepts chunks of any even size at any message rate."""
    with app_client(FakeEngine(slots=4, delay_frames=3), min_chunk_ms=0, max_messages_per_s=0) as c:
        yield c


def test_ready_message(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ready = ws.receive_json()
    assert ready["type"] == "Ready"
    assert ready["protocol_version"] == PROTOCOL_VERSION
    assert (ready["sample_rate"], ready["frame_samples"]) == (SAMPLE_RATE, FRAME_SAMPLES)
    assert ready["engine"] == "fake" and ready["delay_s"] == 0.24
    assert len(ready["session_id"]) == 32


def test_words_then_final_then_normal_close(client: TestClient) -> None:
    messages, code = stream(client, pcm("hello big world"))
    kinds = [m["type"] for m in messages]
    assert kinds == ["Ready", "Word", "Word", "Word", "Final"]
    assert code == 1000
    words = [m for m in messages if m["type"] == "Word"]
    assert [w["text"] for w in words] == ["hello", "big", "world"]
    assert words[0] == {"type": "Word", "text": "hello", "start_s": 0.0, "end_s": 0.4}
    final = messages[-1]
    assert final["final"] is True and final["status"] == "complete"
    assert final["transcript"] == "hello big world"
    assert final["words"][1] == {"word": "big", "start_s": 0.48, "end_s": 0.72}
    assert final["audio_s"] == pytest.approx(len(pcm("hello big world")) / 2 / SAMPLE_RATE, abs=1e-3)


def test_concatenating_every_text_field_gives_the_transcript_once(client: TestClient) -> None:
    messages, _ = stream(client, pcm("one two three"))
    texts = [m["text"] for m in messages if "text" in m]
    assert " ".join(texts) == messages[-1]["transcript"]


@pytest.mark.parametrize("chunk", [62, 1000, 3838, CHUNK_BYTES, 200_000])
def test_any_even_chunk_size_gives_the_same_words(any_chunks: TestClient, chunk: int) -> None:
    messages, code = stream(any_chunks, pcm("chunking is invisible"), chunk=chunk)
    assert code == 1000
    assert messages[-1]["transcript"] == "chunking is invisible"


def test_random_chunking_including_single_samples(any_chunks: TestClient) -> None:
    data = pcm("ragged chunks")
    rng = np.random.default_rng(7)
    with any_chunks.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        offset = 0
        while offset < len(data):
            size = 2 * int(rng.choice([1, 2, 3, 959, 960, 961, 5000]))
            ws.send_bytes(data[offset : offset + size])
            offset += size
        ws.send_text(CLOSE)
        messages, code = collect(ws)
    assert code == 1000 and messages[-1]["transcript"] == "ragged chunks"


def test_three_byte_eos_ends_the_stream(client: TestClient) -> None:
    messages, code = stream(client, pcm("simple client"), end=END_OF_STREAM_BYTES)
    assert code == 1000 and messages[-1]["transcript"] == "simple client"


def test_transcribe_alias_path(client: TestClient) -> None:
    messages, code = stream(client, pcm("alias"), path="/v1/transcribe")
    assert code == 1000 and messages[-1]["transcript"] == "alias"


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param(lambda: FakeEngine(slots=4, delay_frames=3), id="acked-in-the-flush-step"),
        pytest.param(lambda: LateAckEngine(land_at_once=True, slots=4, delay_frames=3), id="acked-later"),
    ],
)
def test_finalize_flushes_pending_words_and_keeps_the_stream_open(engine: Callable[[], Engine]) -> None:
    """The wire is the same whether the engine acknowledges a flush in the flush row's step
    (Kyutai) or in a later one (Whisper, when the final decode lands)."""
    with app_client(engine()) as client, client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(pcm("first", gap_frames=0))  # no trailing silence: the word is unfinished
        ws.send_text(FINALIZE)
        first = [ws.receive_json(), ws.receive_json()]
        assert [m["type"] for m in first] == ["Word", "Flushed"]
        assert first[0]["text"] == "first"
        assert first[1]["audio_s"] == pytest.approx(0.4)
        ws.send_bytes(pcm("second"))
        ws.send_text(CLOSE)
        rest, code = collect(ws)
    assert code == 1000
    assert [m["type"] for m in rest] == ["Word", "Final"]
    assert rest[0]["text"] == "second"
    assert rest[0]["start_s"] == pytest.approx(0.4)  # client audio time: Finalize padding removed
    assert rest[-1]["transcript"] == "first second"


def test_configure_sets_the_language_of_the_stream() -> None:
    engine = FakeEngine(slots=2, delay_frames=0)
    with app_client(engine) as client:
        configure = json.dumps({"type": "Configure", "language": "fr"})
        messages, code = stream(client, pcm("bonjour"), before=[configure])
    assert code == 1000 and messages[-1]["transcript"] == "bonjour"
    assert engine.slot_options(0).language == "fr"


def test_pause_messages_are_opt_in() -> None:
    engine = FakeEngine(slots=2, delay_frames=1, pause_frames=4)
    silence = float32_to_pcm16(np.zeros(6 * FRAME_SAMPLES, np.float32))
    audio = pcm("first turn") + silence + pcm("second")
    with app_client(engine) as client:
        asked, _ = stream(client, audio, before=[json.dumps({"type": "Configure", "pauses": True})])
        plain, _ = stream(client, audio)
    assert asked[0]["pauses"] is True
    kinds = [m["type"] for m in asked]
    assert kinds == ["Ready", "Word", "Word", "Pause", "Word", "Final"]
    pause = asked[3]
    assert pause["time_s"] == pytest.approx(14 * 0.08) and pause["probability"] == 1.0  # 4th silent frame
    assert "Pause" not in [m["type"] for m in plain]
    assert asked[-1]["transcript"] == plain[-1]["transcript"] == "first turn second"


def test_pauses_refused_when_the_engine_cannot_predict_them(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["pauses"] is False
        ws.send_text(json.dumps({"type": "Configure", "pauses": True}))
        assert "does not predict pauses" in expect_error(ws, "bad_message", 4400)["message"]


def test_keepalive_is_accepted_and_changes_nothing(client: TestClient) -> None:
    messages, code = stream(client, pcm("alive"), before=[KEEP, KEEP])
    assert code == 1000 and messages[-1]["transcript"] == "alive"


@pytest.mark.parametrize(
    ("send", "code", "close_code", "fragment"),
    [
        (lambda ws: ws.send_bytes(b"\x00\x01\x02"), "bad_frame", 4400, "odd byte count"),
        (lambda ws: ws.send_bytes(b"\x00" * ((1 << 20) + 2)), "too_large", 4413, "exceeds"),
        (lambda ws: ws.send_text("x" * ((1 << 20) + 1)), "too_large", 4413, "exceeds"),
        (lambda ws: ws.send_text("hello?"), "bad_message", 4400, "not valid JSON"),
        (lambda ws: ws.send_text('{"type": "Shout"}'), "bad_message", 4400, "unknown message type"),
        (
            lambda ws: ws.send_text('{"type": "Configure", "language": "de"}'),
            "bad_message",
            4400,
            "unsupported language 'de'",
        ),
    ],
)
def test_bad_input_gets_its_documented_error(
    client: TestClient, send: Any, code: str, close_code: int, fragment: str
) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        send(ws)
        error = expect_error(ws, code, close_code)
    assert fragment in error["message"]


def test_configure_after_audio_is_refused(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(pcm("a"))
        ws.send_text(json.dumps({"type": "Configure", "language": "en"}))
        assert "before any audio" in expect_error(ws, "bad_message", 4400)["message"]


def test_audio_after_end_of_stream_is_refused(client: TestClient) -> None:
    engine = FakeEngine(slots=1, delay_frames=0, step_cost_s=0.05)
    with app_client(engine) as slow, slow.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(pcm("late"))
        ws.send_bytes(END_OF_STREAM_BYTES)
        ws.send_bytes(pcm("more"))
        error = expect_error(ws, "bad_message", 4400)
    assert "after end of stream" in error["message"]


def test_repeated_end_markers_are_harmless(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(pcm("twice"))
        ws.send_text(CLOSE)
        ws.send_bytes(END_OF_STREAM_BYTES)
        messages, code = collect(ws)
    assert code == 1000 and messages[-1]["transcript"] == "twice"


def test_idle_stream_times_out_unless_kept_alive() -> None:
    """KeepAlives 10x more often than the timeout for longer than the timeout: still open.
    (Time passing is what is tested here; the margin holds on a loaded CPU.)"""
    with app_client(FakeEngine(slots=1), idle_timeout_s=0.5) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            for _ in range(16):  # 0.8 s in all, but never 0.5 s of silence
                time.sleep(0.05)
                ws.send_text(KEEP)
            ws.send_text(CLOSE)
            _messages, code = collect(ws)
            assert code == 1000
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            error = expect_error(ws, "idle_timeout", 4408)
    assert "0.5 s" in error["message"]


def test_over_capacity_is_refused_and_existing_streams_are_untouched() -> None:
    with app_client(FakeEngine(slots=2, delay_frames=1)) as client:
        with client.websocket_connect("/v1/stream") as a, client.websocket_connect("/v1/stream") as b:
            a.receive_json()
            b.receive_json()
            a.send_bytes(pcm("alpha"))
            b.send_bytes(pcm("beta"))
            with client.websocket_connect("/v1/stream") as refused:
                error = expect_error(refused, "over_capacity", 4503)
                assert "2 slots are busy" in error["message"]
            a.send_text(CLOSE)
            b.send_text(CLOSE)
            assert collect(a)[0][-1]["transcript"] == "alpha"
            assert collect(b)[0][-1]["transcript"] == "beta"
        assert client.get("/readyz").json()["slots_used"] == 0


def test_past_the_measured_capacity_a_stream_is_refused_though_slots_are_free() -> None:
    """Ready and /v1/status say what the engine measured; the stream past it gets
    over_capacity and the running one keeps going; a higher measurement admits more."""
    engine = MeasuredEngine(1, slots=4, delay_frames=1)
    with app_client(engine) as client, client.websocket_connect("/v1/stream") as a:
        ready = a.receive_json()
        assert ready["capacity"] == {
            "streams": 1,
            "source": "measured",
            "measured_streams": 1,
            "decode_s": 0.25,
            "decode_s_per_audio_s": 0.25,
            "budget_s": 1.0,
            "samples": 3,
        }
        a.send_bytes(pcm("alpha"))
        status = client.get("/v1/status").json()
        assert (status["slots_total"], status["slots_used"], status["slots_free"]) == (4, 1, 0)
        assert status["capacity"]["streams"] == 1
        with client.websocket_connect("/v1/stream") as refused:
            error = expect_error(refused, "over_capacity", 4503)
            assert "takes 1 stream within its latency budget (measured decoder cost)" in error["message"]
        engine.streams = 2
        assert client.get("/v1/status").json()["slots_free"] == 1
        with client.websocket_connect("/v1/stream") as b:
            assert b.receive_json()["capacity"]["streams"] == 2
            b.send_bytes(pcm("beta"))
            b.send_text(CLOSE)
            assert collect(b)[0][-1]["transcript"] == "beta"
        a.send_text(CLOSE)
        assert collect(a)[0][-1]["transcript"] == "alpha"


def test_client_disconnecting_mid_stream_frees_its_slot(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(pcm("gone soon"))
        assert client.get("/readyz").json()["slots_used"] == 1
    wait_for_no_streams(client)  # the session saw the disconnect and ended
    assert client.get("/readyz").json()["slots_used"] == 0
    messages, code = stream(client, pcm("next"))
    assert code == 1000 and messages[-1]["transcript"] == "next"


def test_engine_failure_is_reported_and_the_server_keeps_serving() -> None:
    poison = pcm16_to_float32(float32_to_pcm16(encode_text("q", gap_frames=0)))  # as the server sees it
    engine = FailingEngine(
        lambda b: any(np.array_equal(f, poison) for f in b.frames), slots=2, delay_frames=0
    )
    with app_client(engine) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            ws.send_bytes(float32_to_pcm16(poison))
            expect_error(ws, "internal_error", 4500)
        messages, code = stream(client, pcm("still here"))
        assert code == 1000 and messages[-1]["transcript"] == "still here"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "slots_used": 0, "slots_total": 4}


def test_quiet_gc_freezes_startup_objects_and_raises_the_thresholds() -> None:
    import gc

    from stt.server.app import GC_THRESHOLDS, quiet_gc

    before = gc.get_threshold()
    try:
        quiet_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 1000  # imports and the app no longer walked by every collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
