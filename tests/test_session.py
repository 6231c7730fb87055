"""The session state machine over a fake connection: no web framework involved."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt.audio import float32_to_pcm16
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.messages import CloseStream, Configure, ErrorCode, FinalStatus, ProtocolError
from stt.scheduler import NoCapacityError, Scheduler
from stt.session import (
    Audio,
    Binary,
    ClientInput,
    Incoming,
    Session,
    SessionLimits,
    State,
    Text,
    decode_message,
)
from tests.fakes import FakeConnection, Listener


def run_session(script: list[Incoming], **limits: float) -> tuple[Session, FakeConnection]:
    async def main() -> tuple[Session, FakeConnection]:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=2))
        await scheduler.start(warmup=False)
        session = Session(scheduler.info, SessionLimits(**limits))  # type: ignore[arg-type]
        conn = FakeConnection(script)
        async with scheduler.stream(session) as handle:
            with pytest.raises(NoCapacityError, match="all 1 slots are busy"):
                async with scheduler.stream(Listener()):
                    pass  # the only slot is taken
            await session.run(conn, handle)
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
        session = Session(scheduler.info, SessionLimits())
        conn = FakeConnection([Binary(float32_to_pcm16(encode_text("bye")))], hold_open=False)
        async with scheduler.stream(session) as handle:
            await session.run(conn, handle)
        assert scheduler.used_slots == 0
        await scheduler.stop()
        return session, conn

    session, conn = asyncio.run(main())
    assert session.close_reason == "client_disconnected" and conn.closed is None


def test_a_session_waiting_on_its_close_frame_reports_no_backlog() -> None:
    """After the Final the planner has let the stream go; the backlog gauge, summed over open
    sessions at scrape time, must still read while the close frame is on its way."""

    class SlowClose(FakeConnection):
        def __init__(self, script: list[Incoming]) -> None:
            super().__init__(script)
            self.closing = asyncio.Event()
            self.release = asyncio.Event()

        async def close(self, code: int, reason: str = "") -> None:
            self.closing.set()
            await self.release.wait()
            await super().close(code, reason)

    async def main() -> None:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=1))
        await scheduler.start(warmup=False)
        session = Session(scheduler.info, SessionLimits())
        conn = SlowClose([Binary(float32_to_pcm16(encode_text("gauge"))), Text('{"type": "CloseStream"}')])
        async with scheduler.stream(session) as handle:
            run = asyncio.create_task(session.run(conn, handle))
            await asyncio.wait_for(conn.closing.wait(), 10)
            assert session.state is State.CLOSING and session.close_reason == "complete"
            assert session.backlog_s == 0.0
            conn.release.set()
            await asyncio.wait_for(run, 10)
        await scheduler.stop()
        assert session.state is State.CLOSED and conn.closed == (1000, "complete")

    asyncio.run(main())


def test_a_drain_during_the_handshake_still_ends_with_ready_then_final() -> None:
    """The server registers a stream for draining before its accept() completes; what the
    drain does meanwhile reaches the client in protocol order once the handshake is done."""

    class SlowAccept(FakeConnection):
        def __init__(self) -> None:
            super().__init__([])
            self.accepting = asyncio.Event()
            self.release = asyncio.Event()

        async def accept(self) -> None:
            self.accepting.set()
            await self.release.wait()
            await super().accept()

    async def main() -> tuple[Session, SlowAccept]:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=1))
        await scheduler.start(warmup=False)
        session = Session(scheduler.info, SessionLimits())
        conn = SlowAccept()
        async with scheduler.stream(session) as handle:
            run = asyncio.create_task(session.run(conn, handle))
            await asyncio.wait_for(conn.accepting.wait(), 10)
            session.warn("draining", "shutting down", 0.0)
            session.end_by_server(FinalStatus.DRAINING)
            conn.release.set()
            await asyncio.wait_for(run, 10)
        await scheduler.stop()
        return session, conn

    session, conn = asyncio.run(main())
    assert [m["type"] for m in conn.sent] == ["Ready", "Warning", "Final"]
    assert conn.sent[-1]["status"] == "draining" and conn.closed == (1001, "draining")
    assert session.close_reason == "draining"


def spoken(text: str) -> list[Incoming]:
    """The tone code of `text` in chunks of at most a second."""
    pcm = float32_to_pcm16(encode_text(text))
    second = 2 * 24000
    return [Binary(pcm[i : i + second]) for i in range(0, len(pcm), second)]


def test_numerals_are_rewritten_in_every_word_and_the_final() -> None:
    configure = Text('{"type": "Configure", "language": "en", "numerals": "digits"}')
    _, conn = run_session([configure, *spoken("i have twenty five apples"), Text('{"type": "CloseStream"}')])
    assert [m["text"] for m in conn.sent if m["type"] == "Word"] == ["i", "have", "25", "apples"]
    assert conn.sent[-1]["transcript"] == "i have 25 apples"
    twenty_five = conn.sent[-1]["words"][2]
    assert twenty_five["word"] == "25" and twenty_five["start_s"] < twenty_five["end_s"]

    configure = Text('{"type": "Configure", "language": "fr", "numerals": "words"}')
    _, conn = run_session([configure, *spoken("j'ai 21 ans"), Text('{"type": "CloseStream"}')])
    assert conn.sent[-1]["transcript"] == "j'ai vingt et un ans"


def test_a_number_held_back_goes_out_before_flushed_and_final() -> None:
    configure = Text('{"type": "Configure", "language": "fr", "numerals": "digits"}')
    finalize, close = Text('{"type": "Finalize"}'), Text('{"type": "CloseStream"}')
    _, conn = run_session([configure, *spoken("il en a douze"), finalize, close])
    types = [m["type"] for m in conn.sent]
    assert [m["text"] for m in conn.sent if m["type"] == "Word"] == ["il", "en", "a", "12"]
    assert types.index("Flushed") > max(i for i, t in enumerate(types) if t == "Word")
    assert conn.sent[-1]["transcript"] == "il en a 12"


def test_a_bad_numerals_value_is_a_bad_message() -> None:
    _, conn = run_session([Text('{"type": "Configure", "numerals": "roman"}')])
    assert conn.sent[-1]["type"] == "Error" and conn.sent[-1]["code"] == "bad_message"
    assert "numerals" in conn.sent[-1]["message"] and conn.closed == (4400, "bad_message")


def test_the_wire_format_decodes_to_typed_messages() -> None:
    assert decode_message(Binary(b"EOS")) == CloseStream()
    assert decode_message(Binary(b"\x01\x00")) == Audio(b"\x01\x00")
    assert decode_message(Text('{"type": "Configure", "language": "FR"}')) == Configure(language="fr")
    with pytest.raises(ProtocolError, match="not valid JSON"):
        decode_message(Text("{"))


def test_another_wire_format_drives_the_same_session() -> None:
    """What a protocol adapter does: its own decoder, the same rules and results."""

    def decode(message: Binary | Text) -> ClientInput:
        if isinstance(message, Binary):
            return Audio(message.data)
        if message.text == "done":
            return CloseStream()
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"not ours: {message.text[:10]}")

    async def main(script: list[Incoming]) -> FakeConnection:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=1))
        await scheduler.start(warmup=False)
        session = Session(scheduler.info, SessionLimits(), decode=decode)
        conn = FakeConnection(script)
        async with scheduler.stream(session) as handle:
            await asyncio.wait_for(session.run(conn, handle), 10)
        await scheduler.stop()
        return conn

    audio = Binary(float32_to_pcm16(encode_text("adapter")))
    conn = asyncio.run(main([audio, Text("done")]))
    assert conn.sent[-1]["transcript"] == "adapter" and conn.closed == (1000, "complete")
    conn = asyncio.run(main([audio, Text('{"type": "CloseStream"}')]))
    assert conn.sent[-1]["code"] == "bad_message" and conn.closed == (4400, "bad_message")


_MESSAGES = st.one_of(
    st.binary(max_size=5000).map(Binary),
    st.sampled_from([b"EOS", b"", b"\x00", b"\x00\x00" * 480]).map(Binary),
    st.text(max_size=60).map(Text),
    st.sampled_from(
        [
            '{"type": "KeepAlive"}',
            '{"type": "Finalize"}',
            '{"type": "CloseStream"}',
            '{"type": "Configure", "language": "fr"}',
            '{"type": "Configure", "language": "xx"}',
            '{"type": "Configure", "pauses": true}',
            '{"type": "Configure", "numerals": "digits"}',
            '{"type": "Configure", "numerals": "words"}',
            '{"type": 3}',
            "[]",
        ]
    ).map(Text),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_MESSAGES, max_size=12), st.booleans())
def test_any_message_sequence_ends_cleanly(script: list[Incoming], end: bool) -> None:
    """Whatever a client sends, the session ends with one Final or one Error whose close code
    matches, never raises (no illegal move), closes with the reason it counts in its metric,
    and gives its slot back."""
    if end:
        script = [*script, Text('{"type": "CloseStream"}')]

    async def main() -> tuple[Session, FakeConnection, int]:
        scheduler = Scheduler(FakeEngine(slots=1, delay_frames=1))
        await scheduler.start(warmup=False)
        session = Session(
            scheduler.info, SessionLimits(idle_timeout_s=0.2, min_chunk_ms=20, max_chunk_ms=100)
        )
        conn = FakeConnection(script)
        async with scheduler.stream(session) as handle:
            await asyncio.wait_for(session.run(conn, handle), 10)
        used = scheduler.used_slots
        await scheduler.stop()
        return session, conn, used

    session, conn, used = asyncio.run(main())
    assert used == 0 and session.state is State.CLOSED
    kinds = [m["type"] for m in conn.sent]
    assert kinds[0] == "Ready"
    assert kinds.count("Final") + kinds.count("Error") == 1
    assert conn.closed is not None
    assert session.close_reason == conn.closed[1]
    last = conn.sent[-1]
    if last["type"] == "Final":
        assert conn.closed[0] == 1000
    else:
        assert last["type"] == "Error" and conn.closed[0] == last["close_code"]
