import json
import logging

from stt.logs import ClientErrorFilter, JsonFormatter, TextFormatter, fields


def record(**values: object) -> logging.LogRecord:
    rec = logging.LogRecord("stt.session", logging.INFO, __file__, 1, "stream closed", None, None)
    rec.__dict__.update(fields(**values))
    return rec


def test_text_lines_are_key_value() -> None:
    line = TextFormatter().format(record(id="abc", duration_s=1.23456, reason="client gone"))
    assert line.endswith('INFO stt.session: stream closed id=abc duration_s=1.235 reason="client gone"')


def test_json_lines_parse() -> None:
    out = json.loads(JsonFormatter().format(record(id="abc", words=3)))
    assert out["msg"] == "stream closed" and out["id"] == "abc" and out["words"] == 3
    assert out["level"] == "info" and out["logger"] == "stt.session"


def test_client_utf8_errors_are_not_logged_as_server_errors() -> None:
    try:
        b"\xff".decode()
    except UnicodeDecodeError:
        import sys

        exc_info = sys.exc_info()
    rec = logging.LogRecord(
        "uvicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Invalid UTF-8 sequence received from client.",
        None,
        exc_info,
    )
    assert ClientErrorFilter().filter(rec)
    assert rec.levelname == "INFO" and rec.exc_info is None
    other = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, exc_info
    )
    ClientErrorFilter().filter(other)
    assert other.levelname == "ERROR" and other.exc_info is not None
