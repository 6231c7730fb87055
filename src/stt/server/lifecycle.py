"""The set of open streams and the graceful drain that empties it.

On shutdown, new streams are refused at once, open streams get a Warning and may finish on
their own during the grace period; whatever is still open then is flushed and ends with a
Final (status "draining") and close 1001. Nothing is cut without its words.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from stt.logs import fields
from stt.messages import FinalStatus

log = logging.getLogger(__name__)


class Drainable(Protocol):
    id: str

    @property
    def backlog_s(self) -> float: ...

    def warn(self, code: str, message: str, remaining_s: float) -> None: ...

    def end_by_server(self, status: FinalStatus) -> None: ...


class Lifecycle:
    """Tracks open streams; `accepting` turns false for good when a drain starts."""

    def __init__(self) -> None:
        self.accepting = True
        self.draining = False
        self._streams: set[Drainable] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._streams)

    def backlog_s(self) -> float:
        """Audio waiting for the model, summed over open streams."""
        return sum(s.backlog_s for s in self._streams)

    def add(self, stream: Drainable) -> None:
        self._streams.add(stream)
        self._empty.clear()

    def discard(self, stream: Drainable) -> None:
        self._streams.discard(stream)
        if not self._streams:
            self._empty.set()

    async def drain(self, grace_s: float, *, flush_timeout_s: float = 30.0) -> None:
        """Stop accepting, let streams finish for `grace_s`, then end the rest with a Final."""
        self.accepting = False
        self.draining = True
        log.info("draining", extra=fields(open_streams=len(self._streams), grace_s=grace_s))
        for stream in list(self._streams):
            stream.warn(
                "draining", f"the server is shutting down; this stream ends within {grace_s:g} s", grace_s
            )
        if not await self.wait_empty(grace_s):
            log.info("grace period over; flushing", extra=fields(open_streams=len(self._streams)))
            for stream in list(self._streams):
                stream.end_by_server(FinalStatus.DRAINING)
            if not await self.wait_empty(flush_timeout_s):
                log.warning(
                    "streams still open after flushing", extra=fields(open_streams=len(self._streams))
                )
        log.info("drained")

    async def wait_empty(self, timeout_s: float) -> bool:
        """Wait until no stream is open; False if some still are after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True
