"""Per-stream limits, server-decided endings, metrics and status, driven in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stt.audio import float32_to_pcm16
from stt.constants import SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from tests.fakes import FakeConnection
from tests.helpers import CLOSE, app_client, collect, expect_error, pcm


def chunks(data: bytes, ms: float) -> list[bytes]:
    size = int(ms * SAMPLE_RATE / 1000) * 2
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_ready_advertises_the_limits() -> None:
    with app_client(FakeEngine(slots=1)) as client, client.websocket_connect("/v1/stream") as ws:
        limits = ws.receive_json()["limits"]
    assert limits == {
        "max_message_bytes": 1 << 20,
        "min_chunk_ms": 20.0,
        "max_chunk_ms": 2000.0,
        "max_backlog_s": 10.0,
        "idle_timeout_s": 10.0,
        "max_session_s": 3600.0,
    }


def test_a_short_chunk_is_fine_only_as_the_last_one() -> None:
    with app_client(FakeEngine(slots=2, delay_frames=1)) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            data = pcm("short tail")
            *body, tail = [*chunks(data, 80), b"\x00\x00" * 10]
            for chunk in body:
                ws.send_bytes(chunk)
            ws.send_bytes(tail)  # 10 samples: allowed just before the end
            ws.send_text(CLOSE)
            messages, code = collect(ws)
            assert code == 1000 and messages[-1]["transcript"] == "short tail"
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            ws.send_bytes(b"\x00\x00" * 100)  # 4 ms
            ws.send_bytes(b"\x00\x00" * 960)
            error = expect_error(ws, "bad_frame", 4400)
    assert "4.16667 ms is below the 20 ms minimum" in error["message"]


def test_empty_binary_messages_count_as_short_chunks() -> None:
    with app_client(FakeEngine(slots=1)) as client, client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(b"")
        ws.send_bytes(b"\x00\x00" * 960)
        assert "0 ms is below" in expect_error(ws, "bad_frame", 4400)["message"]


def test_chunks_over_the_maximum_are_refused() -> None:
    with app_client(FakeEngine(slots=1)) as client, client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        ws.send_bytes(b"\x00\x00" * (2 * SAMPLE_RATE + 2))
        assert "exceeds the 2000 ms maximum" in expect_error(ws, "too_large", 4413)["message"]


def test_flooding_faster_than_the_model_closes_with_too_fast() -> None:
    engine = FakeEngine(slots=2, delay_frames=1, step_cost_s=0.02)  # ~4x real time at most
    with app_client(engine, max_backlog_s=1.0) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            for chunk in chunks(float32_to_pcm16(np.zeros(10 * SAMPLE_RATE, np.float32)), 500):
                ws.send_bytes(chunk)
            error = expect_error(ws, "too_fast", 4429)
        assert "limit 1 s" in error["message"]
        metrics = client.get("/metrics").text
    assert 'stt_errors_total{code="too_fast"} 1.0' in metrics


def test_message_rate_is_limited() -> None:
    with (
        app_client(FakeEngine(slots=1), max_messages_per_s=5) as client,
        client.websocket_connect("/v1/stream") as ws,
    ):
        ws.receive_json()
        for _ in range(20):
            ws.send_text(json.dumps({"type": "KeepAlive"}))
        assert "more than 5 messages per second" in expect_error(ws, "rate_limited", 4429)["message"]


def test_session_length_limit_warns_then_ends_with_a_final() -> None:
    engine = FakeEngine(slots=1, delay_frames=1)
    with (
        app_client(engine, max_session_s=0.6, session_warning_s=0.3) as client,
        client.websocket_connect("/v1/stream") as ws,
    ):
        ws.receive_json()
        ws.send_bytes(pcm("before the limit"))
        warning = ws.receive_json()
        while warning["type"] == "Word":
            warning = ws.receive_json()
        assert warning["type"] == "Warning" and warning["code"] == "session_ending"
        assert warning["remaining_s"] == pytest.approx(0.3)
        final = ws.receive_json()
        while final["type"] == "Word":
            final = ws.receive_json()
        ws.send_bytes(pcm("ignored"))  # after the cut: ignored, not an error
        rest, code = collect(ws)
    assert code == 1000 and rest == []
    assert final["type"] == "Final" and final["status"] == "max_duration"
    assert final["transcript"] == "before the limit"


def test_status_and_metrics_during_a_stream() -> None:
    with app_client(FakeEngine(slots=3, delay_frames=1)) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            ws.send_bytes(pcm("metered words"))
            status = client.get("/v1/status").json()
            assert status == {
                "engine": "fake",
                "protocol_version": 1,
                "accepting": True,
                "draining": False,
                "slots_used": 1,
                "slots_total": 3,
                "slots_free": 2,
                "streams_open": 1,
                "capacity": {
                    "streams": 3,
                    "source": "slots",
                    "measured_streams": None,
                    "decode_s": None,
                    "decode_s_per_audio_s": None,
                    "budget_s": None,
                    "samples": 0,
                },
            }
            ws.send_text(CLOSE)
            collect(ws)
        text = client.get("/metrics").text
    for series in (
        "stt_streams_open",
        "stt_slots_used",
        "stt_slots_total 3.0",
        "stt_engine_step_seconds_bucket",
        "stt_batch_rows_bucket",
        "stt_batch_occupancy_ratio",
        "stt_frames_total",
        "stt_audio_seconds_total",
        "stt_words_total 2.0",
        "stt_first_word_latency_seconds_count 1.0",
        "stt_word_latency_seconds_count 2.0",
        "stt_final_latency_seconds_count 1.0",
        "stt_stream_backlog_seconds_bucket",
        "stt_backlog_seconds_total",
        'stt_stream_closes_total{reason="complete"} 1.0',
        "stt_accepting 1.0",
        "stt_context_refreshes_total 0.0",
    ):
        assert series in text, series


def test_draining_refuses_new_streams_and_uploads() -> None:
    with app_client(FakeEngine(slots=2)) as client:
        client.app.state.lifecycle.accepting = False  # type: ignore[attr-defined]
        assert client.get("/readyz").status_code == 503
        with client.websocket_connect("/v1/stream") as ws:
            assert "shutting down" in expect_error(ws, "draining", 4504)["message"]
        upload = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"x")})
        assert upload.status_code == 503 and upload.json()["error"]["code"] == "draining"
        assert 'stt_rejections_total{reason="draining"} 1.0' in client.get("/metrics").text


def test_a_client_that_stops_reading_is_dropped() -> None:
    """Outbox bound: the session gives up on a client that leaves messages unread."""
    import asyncio

    from stt.scheduler import Scheduler
    from stt.session import Binary, Session, SessionLimits

    class StuckConnection(FakeConnection):
        async def send_text(self, text: str) -> None:
            if self.sent:  # Ready goes out, then the client stops reading
                await asyncio.Event().wait()  # never accepts anything
            await super().send_text(text)

    async def main() -> tuple[Session, int]:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=0))
        await scheduler.start(warmup=False)
        limits = SessionLimits(max_outbox_messages=5, send_timeout_s=60, max_chunk_ms=6000)  # one 5.6 s chunk
        session = Session(scheduler.info, limits)
        words = " ".join(f"w{i}" for i in range(20))
        audio = Binary(float32_to_pcm16(encode_text(words)))
        async with scheduler.stream(session) as handle:
            await asyncio.wait_for(session.run(StuckConnection([audio]), handle), 10)
        used = scheduler.used_slots
        await scheduler.stop()
        return session, used

    session, used = asyncio.run(main())
    assert session.close_reason == "slow_consumer" and used == 0


def test_send_timeout_drops_a_client_that_accepts_nothing() -> None:
    import asyncio

    from stt.scheduler import Scheduler
    from stt.session import Session, SessionLimits

    class Frozen(FakeConnection):
        async def send_text(self, text: str) -> None:
            await asyncio.Event().wait()  # never accepts anything

    async def main() -> Session:
        scheduler = Scheduler(FakeEngine(slots=1))
        await scheduler.start(warmup=False)
        session = Session(scheduler.info, SessionLimits(send_timeout_s=0.2))
        async with scheduler.stream(session) as handle:
            await asyncio.wait_for(session.run(Frozen([]), handle), 5)
        await scheduler.stop()
        return session

    assert asyncio.run(main()).close_reason == "slow_consumer"
