"""A timeout on a wait that recurs: one timer for all the waits, not one per wait.

A session waits for the next client message every few hundred milliseconds, with a 10 s
idle limit; it waits for each send with a 30 s limit. `asyncio.timeout` around every wait
made and cancelled a timer per message (with its task and loop look-ups: about 6% of the
event loop's time at 500 streams, benchmarks/server_load.py). A `Watchdog` only notes when
the current wait began; its one timer is armed when a wait begins and none is armed, and
when it fires it either expires the wait it was armed for, if that wait is still going, or
moves to the deadline of the wait now going on. So the timer moves at most once per
timeout period, and a wait is expired exactly when `asyncio.timeout` would have done it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What a watchdog needs of an event loop (asyncio's and uvloop's loops are one)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> TimerHandle: ...


class Watchdog:
    """Calls `expired` (on the loop) once a wait, from `begin()` to `end()`, has lasted
    `timeout_s`. The callback decides what expiry means (an Error, cancelling the waiting
    task); the watchdog is then idle until the next `begin()`."""

    def __init__(self, clock: Clock, timeout_s: float, expired: Callable[[], None]) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._clock = clock
        self._timeout_s = timeout_s
        self._expired = expired
        self._since: float | None = None
        """When the wait going on began; None between waits."""
        self._timer: TimerHandle | None = None
        self._armed_for = 0.0
        """The deadline the timer was set for."""

    @property
    def waiting(self) -> bool:
        return self._since is not None

    def begin(self) -> None:
        """A wait begins now."""
        since = self._since = self._clock.time()
        if self._timer is None:
            self._arm(since + self._timeout_s)

    def end(self) -> None:
        """The wait is over (the timer stays armed: it rechecks when it fires)."""
        self._since = None

    def cancel(self) -> None:
        """Stop watching for good (the session is over)."""
        self._since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        self._armed_for = when
        self._timer = self._clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        since = self._since
        if since is None:
            return  # between waits: the next begin() arms it again
        due = since + self._timeout_s
        if due <= self._armed_for:
            self._since = None
            self._expired()
        else:
            self._arm(due)
