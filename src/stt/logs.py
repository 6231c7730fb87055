"""Logging set-up: one line per event, as `key=value` text or JSON.

Call sites log a short message plus `extra={"fields": {...}}`; the formatter renders the
fields, so stream open/close lines are grep-able in text and parseable in JSON.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


def fields(**values: Any) -> dict[str, Any]:
    """`log.info("stream closed", extra=fields(id=..., reason=...))`."""
    return {"fields": values}


def _field_items(record: logging.LogRecord) -> dict[str, Any]:
    values = getattr(record, "fields", None)
    return values if isinstance(values, dict) else {}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        line = f"{stamp}.{int(record.msecs):03d} {record.levelname} {record.name}: {record.getMessage()}"
        extra = " ".join(f"{k}={_text(v)}" for k, v in _field_items(record).items())
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_field_items(record),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class ClientErrorFilter(logging.Filter):
    """uvicorn logs a client's invalid UTF-8 text frame as an ERROR with a traceback. It is
    the client's error, already answered with close 1007: keep it to one INFO line so real
    server errors stand out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and record.getMessage().startswith("Invalid UTF-8"):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Route the root logger (and uvicorn's, which propagate to it) through one handler."""
    handler = logging.StreamHandler()
    handler.addFilter(ClientErrorFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
