"""This server's own protocol (docs/protocol.md) as an Adapter: the session's defaults."""

from __future__ import annotations

from stt.messages import ErrorCode
from stt.session import Frame, Session, refuse_json


class NativeProtocol:
    """/v1/stream: JSON controls and PCM16 binary in, JSON messages out."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> Session:
        return self._session

    def refusal(self, code: ErrorCode, message: str) -> Frame:
        return refuse_json(code, message)
