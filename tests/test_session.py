"""The session state machine over a fake connection: no web framework involved."""

from __future__ import annotations

import asyncio
import json

from stt.audio import float32_to_pcm16
from stt.engine.fake import FakeEngine
from stt.scheduler import Scheduler
from stt.session import Binary, Disconnect, Incoming, Session, SessionLimits, State, Text
from stt.tones import encode_text


class FakeConnection:
    """Feeds scripted messages; records what the session sends and how it closes."""

    def __init__(self, script: list[Incoming], *, hold_open: bool = True) -> None:
        self._script: asyncio.Queue[Incoming] = asyncio.Queue()
        for item in script:
            self._script.put_nowait(item)
        self._hold_open = hold_open
        self.sent: list[dict[str, object]] = []
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> Incoming:
        if self._script.empty() and not self._hold_open:
            return Disconnect(1000)
        return await self._script.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)
        self._script.put_nowait(Disconnect(code))


def run_session(script: list[Incoming], **limits: float) -> tuple[Session, FakeConnection]:
    async def main() -> tuple[Session, FakeConnection]:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=2))
        await scheduler.start(warmup=False)
        session = Session(scheduler, SessionLimits(**limits))  # type: ignore[arg-type]
        assert session.admit()
        assert not Session(scheduler, SessionLimits()).admit()  # the only slot is taken
        conn = FakeConnection(script)
        await session.run(conn)
        assert scheduler.used_slots == 0
        await scheduler.stop()
        return session, conn

    return asyncio.run(main())


def test_complete_stream() -> None:
    audio = Binary(float32_to_pcm16(encode_text("fake conn")))
    session, conn = run_session([audio, Text('{"type": "CloseStream"}')])
    assert [m["type"] for m in conn.sent] == ["Ready", "Word", "Word", "Final"]
    assert conn.closed == (1000, "complete")
    assert session.state is State.CLOSED and session.close_reason == "complete"
    assert [w.text for w in session.words] == ["fake", "conn"]


def test_protocol_error_closes_with_its_code() -> None:
    session, conn = run_session([Binary(b"\x01")])
    assert conn.sent[-1]["code"] == "bad_frame"
    assert conn.closed == (4400, "bad_frame")
    assert session.close_reason == "bad_frame"


def test_idle_timeout() -> None:
    _session, conn = run_session([], idle_timeout_s=0.05)
    assert conn.closed == (4408, "idle_timeout")


def test_disconnect_mid_stream_releases_the_slot() -> None:
    async def main() -> tuple[Session, FakeConnection]:
        scheduler = Scheduler(FakeEngine(slots=1))
        await scheduler.start(warmup=False)
        session = Session(scheduler, SessionLimits())
        assert session.admit()
        conn = FakeConnection([Binary(float32_to_pcm16(encode_text("bye")))], hold_open=False)
        await session.run(conn)
        assert scheduler.used_slots == 0
        await scheduler.stop()
        return session, conn

    session, conn = asyncio.run(main())
    assert session.close_reason == "client_disconnected" and conn.closed is None
