"""The stream state machine on its own: every legal move, every illegal one refused."""

from __future__ import annotations

import itertools

import pytest

from stt.messages import CloseCode, ErrorCode, FinalStatus
from stt.session_state import CloseReason, IllegalTransitionError, State, StreamState

S = State
LEGAL = {
    (S.CONFIGURING, S.STREAMING),
    (S.CONFIGURING, S.ENDING),
    (S.CONFIGURING, S.SERVER_ENDING),
    (S.CONFIGURING, S.CLOSING),
    (S.CONFIGURING, S.ABANDONED),
    (S.CONFIGURING, S.CLOSED),
    (S.STREAMING, S.STREAMING),
    (S.STREAMING, S.ENDING),
    (S.STREAMING, S.SERVER_ENDING),
    (S.STREAMING, S.CLOSING),
    (S.STREAMING, S.ABANDONED),
    (S.STREAMING, S.CLOSED),
    (S.ENDING, S.CLOSING),
    (S.ENDING, S.ABANDONED),
    (S.ENDING, S.CLOSED),
    (S.SERVER_ENDING, S.CLOSING),
    (S.SERVER_ENDING, S.ABANDONED),
    (S.SERVER_ENDING, S.CLOSED),
    (S.CLOSING, S.ABANDONED),
    (S.CLOSING, S.CLOSED),
    (S.ABANDONED, S.CLOSED),
}
"""Written out here, apart from the module's table, so that a change to either shows."""

_PATH: dict[State, list[tuple[State, CloseReason | None]]] = {
    S.CONFIGURING: [],
    S.STREAMING: [(S.STREAMING, None)],
    S.ENDING: [(S.STREAMING, None), (S.ENDING, None)],
    S.SERVER_ENDING: [(S.SERVER_ENDING, CloseReason.MAX_DURATION)],
    S.CLOSING: [(S.CLOSING, CloseReason.BAD_FRAME)],
    S.ABANDONED: [(S.ABANDONED, None)],
    S.CLOSED: [(S.CLOSED, None)],
}
_REASON: dict[State, CloseReason | None] = {
    S.SERVER_ENDING: CloseReason.DRAINING,
    S.CLOSING: CloseReason.IDLE_TIMEOUT,
}
"""A reason each target accepts from every state that may move there."""


def at(state: State) -> StreamState:
    machine = StreamState()
    for target, reason in _PATH[state]:
        machine.move(target, reason)
    assert machine.state is state
    return machine


@pytest.mark.parametrize(("source", "target"), sorted(LEGAL, key=lambda m: (m[0].name, m[1].name)))
def test_every_legal_move_is_allowed(source: State, target: State) -> None:
    machine = at(source)
    machine.move(target, _REASON.get(target))
    assert machine.state is target


ILLEGAL = sorted(set(itertools.product(State, State)) - LEGAL, key=lambda m: (m[0].name, m[1].name))


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_other_move_is_refused_and_changes_nothing(source: State, target: State) -> None:
    machine = at(source)
    before = (machine.final_reason, machine.reason)
    with pytest.raises(IllegalTransitionError, match=f"{source.name} -> {target.name}"):
        machine.move(target, _REASON.get(target))
    assert machine.state is source and (machine.final_reason, machine.reason) == before


def test_nothing_leaves_closed() -> None:
    assert not [t for s, t in LEGAL if s is S.CLOSED]
    assert all((s, S.CLOSED) in LEGAL for s in State if s is not S.CLOSED)


# -- reasons travel with the moves ----------------------------------------------------------


def test_a_client_end_waits_for_a_complete_final() -> None:
    machine = at(S.STREAMING)
    machine.move(S.ENDING)
    assert machine.reason is None and machine.final_reason is CloseReason.COMPLETE
    with pytest.raises(IllegalTransitionError):
        machine.move(S.CLOSING, CloseReason.MAX_DURATION)  # not the Final it waits for
    machine.move(S.CLOSING, CloseReason.COMPLETE)
    machine.move(S.CLOSED)
    assert machine.reason is CloseReason.COMPLETE and machine.final_reason is None


def test_a_server_end_names_its_final_and_no_other() -> None:
    for wrong in (None, CloseReason.COMPLETE, CloseReason.BAD_FRAME, CloseReason.SLOW_CONSUMER):
        with pytest.raises(IllegalTransitionError):
            at(S.STREAMING).move(S.SERVER_ENDING, wrong)
    machine = at(S.STREAMING)
    machine.move(S.SERVER_ENDING, CloseReason.DRAINING)
    assert machine.final_reason is CloseReason.DRAINING
    with pytest.raises(IllegalTransitionError):
        machine.move(S.CLOSING, CloseReason.COMPLETE)
    machine.move(S.CLOSING, CloseReason.DRAINING)
    assert machine.reason is CloseReason.DRAINING


def test_an_open_stream_closes_only_with_an_error() -> None:
    for final in (CloseReason.COMPLETE, CloseReason.MAX_DURATION, CloseReason.DRAINING, None):
        with pytest.raises(IllegalTransitionError):
            at(S.STREAMING).move(S.CLOSING, final)
    for reason in (CloseReason.CLIENT_DISCONNECTED, CloseReason.SLOW_CONSUMER):
        with pytest.raises(IllegalTransitionError):
            at(S.CONFIGURING).move(S.CLOSING, reason)  # these send no close frame
    machine = at(S.ENDING)
    machine.move(S.CLOSING, CloseReason.INTERNAL_ERROR)  # an engine failure while ending
    assert machine.reason is CloseReason.INTERNAL_ERROR


def test_closed_keeps_the_reason_or_records_the_client_leaving() -> None:
    machine = at(S.CLOSING)
    machine.move(S.CLOSED)
    assert machine.reason is CloseReason.BAD_FRAME
    for left_from in (S.CONFIGURING, S.STREAMING, S.ENDING, S.SERVER_ENDING):
        machine = at(left_from)
        machine.move(S.CLOSED)
        assert machine.reason is CloseReason.CLIENT_DISCONNECTED
    with pytest.raises(IllegalTransitionError):
        at(S.STREAMING).move(S.CLOSED, CloseReason.COMPLETE)  # CLOSED takes no reason of its own


def test_abandoning_is_always_a_slow_consumer() -> None:
    machine = at(S.CLOSING)  # a Final or an Error was queued, then the client stopped reading
    machine.move(S.ABANDONED)
    machine.move(S.CLOSED)
    assert machine.reason is CloseReason.SLOW_CONSUMER
    with pytest.raises(IllegalTransitionError):
        at(S.STREAMING).move(S.ABANDONED, CloseReason.BAD_FRAME)


def test_a_short_chunk_belongs_to_streaming_and_a_finalize_clears_it() -> None:
    machine = at(S.STREAMING)
    machine.note_short_chunk(12.5)
    assert machine.short_chunk_ms == 12.5
    machine.move(S.STREAMING)  # Finalize
    assert machine.short_chunk_ms is None
    for state in set(State) - {S.STREAMING}:
        with pytest.raises(IllegalTransitionError):
            at(state).note_short_chunk(5.0)


# -- close reasons are the labels and the wire's reasons --------------------------------------


def test_close_reasons_keep_their_labels_and_codes() -> None:
    assert {r.value: r.close_code for r in CloseReason} == {
        "complete": CloseCode.NORMAL,
        "max_duration": CloseCode.NORMAL,
        "draining": CloseCode.GOING_AWAY,
        "bad_frame": CloseCode.BAD_FRAME,
        "bad_message": CloseCode.BAD_FRAME,
        "idle_timeout": CloseCode.IDLE_TIMEOUT,
        "too_large": CloseCode.TOO_LARGE,
        "rate_limited": CloseCode.RATE_LIMITED,
        "too_fast": CloseCode.RATE_LIMITED,
        "internal_error": CloseCode.INTERNAL_ERROR,
        "client_disconnected": None,
        "slow_consumer": None,
    }
    assert {r.final_status for r in CloseReason} - {None} == set(FinalStatus)


def test_every_error_a_session_can_send_has_its_reason() -> None:
    refusals = {ErrorCode.UNAUTHORIZED, ErrorCode.OVER_CAPACITY, ErrorCode.DRAINING}
    for code in set(ErrorCode) - refusals:
        reason = CloseReason.of_error(code)
        assert reason.value == code.value and reason.close_code == code.close_code
        assert reason.final_status is None
