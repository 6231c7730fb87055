"""Other protocols' messages translated to and from the one session core (stt.session).

Each adapter owns a `Session` built with its own decoder, encoder and step watcher; the
server routes a socket to it exactly as it routes /v1/stream, so slots, limits, auth,
metrics, drain and engines are shared. No adapter talks to the scheduler or an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stt.engine.interface import EngineInfo
from stt.limits import SessionLimits
from stt.messages import ErrorCode
from stt.metrics import Metrics
from stt.session import Decoder, Encoder, Frame, Session


class Adapter(Protocol):
    """A protocol spoken over one WebSocket: its session, and how it refuses a connection."""

    @property
    def session(self) -> Session: ...

    def refusal(self, code: ErrorCode, message: str) -> Frame:
        """The frame sent before closing a connection refused before its session ran
        (over capacity, draining)."""
        ...


def adapter_session(
    info: EngineInfo,
    limits: SessionLimits,
    metrics: Metrics | None,
    client: str,
    *,
    decode: Decoder,
    encode: Encoder,
    on_step: Callable[[], None] | None = None,
) -> Session:
    """The session of another protocol's connection: with backpressure, because those
    clients stream files faster than real time by design (Kyutai's scripts, SDK examples),
    and with the engine's end-of-turn events, which both protocols carry."""
    return Session(
        info,
        limits,
        metrics,
        client=client,
        decode=decode,
        encode=encode,
        on_step=on_step,
        backpressure=True,
        pauses=info.pause_events,
    )


__all__ = ["Adapter", "adapter_session"]
