import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt.constants import FRAME_SAMPLES, PROTOCOL_VERSION, SAMPLE_RATE
from stt.engine.interface import WordEvent
from stt.messages import (
    CloseCode,
    CloseStream,
    Configure,
    Error,
    ErrorCode,
    Final,
    Finalize,
    Flushed,
    KeepAlive,
    Pause,
    ProtocolError,
    Ready,
    Word,
    parse_client_text,
)
from stt.numerals import Numerals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "KeepAlive"}', KeepAlive()),
        ('{"type": "Finalize"}', Finalize()),
        ('{"type": "CloseStream"}', CloseStream()),
        ('{"type": "CloseStream", "extra": 1}', CloseStream()),
        ('{"type": "Configure"}', Configure()),
        ('{"type": "Configure", "language": "FR"}', Configure(language="fr")),
        ('{"type": "Configure", "language": null}', Configure()),
        ('{"type": "Configure", "pauses": true}', Configure(pauses=True)),
        ('{"type": "Configure", "numerals": "digits"}', Configure(numerals=Numerals.DIGITS)),
        ('{"type": "Configure", "numerals": "words"}', Configure(numerals=Numerals.WORDS)),
        ('{"type": "Configure", "numerals": null}', Configure()),
    ],
)
def test_parses_client_messages(text: str, expected: object) -> None:
    assert parse_client_text(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"KeepAlive"', "JSON object"),
        ("{}", "unknown message type None"),
        ('{"type": "Shout"}', "unknown message type 'Shout'"),
        ('{"type": "Configure", "lang": "en"}', "unknown Configure field"),
        ('{"type": "Configure", "language": 3}', "language must be"),
        ('{"type": "Configure", "language": ""}', "language must be"),
        ('{"type": "Configure", "pauses": "yes"}', "pauses must be true or false"),
        ('{"type": "Configure", "numerals": "roman"}', "numerals must be 'digits' or 'words' or null"),
        ('{"type": "Configure", "numerals": true}', "numerals must be"),
        ('{"type": "Configure", "numerals": ["digits"]}', "numerals must be"),
    ],
)
def test_rejects_bad_client_messages_saying_why(text: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text)
    assert info.value.code is ErrorCode.BAD_MESSAGE
    assert fragment in info.value.message


@given(st.text(max_size=200))
def test_parser_only_ever_raises_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_text(text)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    )
)
def test_parser_handles_any_json_value(value: object) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_text(json.dumps(value))


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_client_text("[" * 100_000 + "]" * 100_000)


def test_every_error_code_has_a_documented_close_code() -> None:
    for code in ErrorCode:
        assert 4000 <= code.close_code < 5000
    assert ErrorCode.OVER_CAPACITY.close_code is CloseCode.OVER_CAPACITY
    assert ErrorCode.DRAINING.close_code is CloseCode.DRAINING
    assert len({c.value for c in CloseCode}) == len(CloseCode)


def test_ready_advertises_the_session_limits_it_is_given() -> None:
    from stt.limits import SessionLimits

    limits = SessionLimits(max_backlog_s=3.0, max_session_s=0.0)
    ready = json.loads(Ready("abc", "fake", 0.48, limits=limits).to_json())
    assert ready["limits"] == {
        "max_message_bytes": limits.max_message_bytes,
        "min_chunk_ms": limits.min_chunk_ms,
        "max_chunk_ms": limits.max_chunk_ms,
        "max_backlog_s": 3.0,
        "idle_timeout_s": limits.idle_timeout_s,
        "max_session_s": 0.0,
    }


def test_server_message_shapes() -> None:
    ready = json.loads(Ready("abc", "fake", 0.48, ("en", "fr")).to_json())
    assert ready == {
        "type": "Ready",
        "session_id": "abc",
        "protocol_version": PROTOCOL_VERSION,
        "sample_rate": SAMPLE_RATE,
        "frame_samples": FRAME_SAMPLES,
        "engine": "fake",
        "delay_s": 0.48,
        "languages": ["en", "fr"],
        "pauses": False,
        "limits": {},
    }
    assert json.loads(Pause(1.23456, 0.87654).to_json()) == {
        "type": "Pause",
        "time_s": 1.235,
        "probability": 0.877,
    }
    assert json.loads(Word("héllo", 0.12345, 0.5).to_json()) == {
        "type": "Word",
        "text": "héllo",
        "start_s": 0.123,
        "end_s": 0.5,
    }
    assert json.loads(Flushed(1.0).to_json()) == {"type": "Flushed", "audio_s": 1.0}
    error = json.loads(Error(ErrorCode.BAD_FRAME, "odd").to_json())
    assert error == {"type": "Error", "code": "bad_frame", "message": "odd", "close_code": 4400}


def test_final_has_transcript_and_no_text_field() -> None:
    final = json.loads(Final([WordEvent("a", 0, 0.1), WordEvent("b", 0.2, 0.3)], 0.4).to_json())
    assert final["type"] == "Final" and final["final"] is True and final["status"] == "complete"
    assert final["transcript"] == "a b"
    assert final["words"] == [
        {"word": "a", "start_s": 0, "end_s": 0.1},
        {"word": "b", "start_s": 0.2, "end_s": 0.3},
    ]
    assert "text" not in json.dumps(final)
