"""Other protocols' messages translated to and from the one session core (stt.session).

Each adapter owns a `Session` built with its own decoder, encoder and step watcher; the
server routes a socket to it exactly as it routes /v1/stream, so slots, limits, auth,
metrics, drain and engines are shared. No adapter talks to the scheduler or an engine.
"""

from __future__ import annotations

from typing import Protocol

from stt.messages import ErrorCode
from stt.session import Frame, Session


class Adapter(Protocol):
    """A protocol spoken over one WebSocket: its session, and how it refuses a connection."""

    @property
    def session(self) -> Session: ...

    def refusal(self, code: ErrorCode, message: str) -> Frame:
        """The frame sent before closing a connection refused before its session ran
        (over capacity, draining)."""
        ...


__all__ = ["Adapter"]
