"""What one stream may do: the session enforces these, and Ready advertises part of them.

The defaults are the server's (`stt serve` without flags); there is no second, permissive
set. Each is a flag and an `STT_*` variable of the same name (`--max-backlog-s`,
`STT_MAX_BACKLOG_S`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stt.setting import Checked, setting


@dataclass(frozen=True)
class SessionLimits(Checked):
    """Per-stream limits, taken as they are by `Session`."""

    idle_timeout_s: float = setting(
        10.0, "close a stream that sends neither audio nor `KeepAlive` for this long"
    )
    max_message_bytes: int = setting(1 << 20, "largest WebSocket message accepted")
    min_chunk_ms: float = setting(
        20.0, "smallest audio chunk accepted (only the last one before Finalize/end may be smaller)"
    )
    max_chunk_ms: float = setting(2000.0, "largest audio chunk accepted")
    max_backlog_s: float = setting(
        10.0, "close a stream with more audio than this waiting for the model (client faster than real time)"
    )
    max_messages_per_s: float = setting(200.0, "per-stream message rate limit, burst of 2 s (0: off)")
    max_session_s: float = setting(3600.0, "longest stream, ended with a Final after a Warning (0: no limit)")
    session_warning_s: float = setting(60.0, "how long before `max_session_s` the Warning comes")
    max_outbox_messages: int = setting(
        10_000, "close a stream whose client leaves this many server messages unread (slow consumer)"
    )
    send_timeout_s: float = setting(30.0, "close a stream whose client accepts no data for this long")

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.idle_timeout_s > 0, "idle_timeout_s must be > 0"
        yield self.max_message_bytes >= 1024, "max_message_bytes must be >= 1024"
        yield 0 <= self.min_chunk_ms <= self.max_chunk_ms, "min_chunk_ms must be in 0..max_chunk_ms"
        yield self.max_backlog_s > 0, "max_backlog_s must be > 0"
        yield self.max_messages_per_s >= 0, "max_messages_per_s must be >= 0"
        yield self.max_session_s >= 0 and self.session_warning_s >= 0, "session limits must be >= 0"
        yield self.max_outbox_messages >= 1 and self.send_timeout_s > 0, "outbox limits must be positive"
