"""The watchdog: one timer for recurring waits, expiring a wait exactly at its deadline."""

from collections.abc import Callable

import pytest

from stt.watchdog import Watchdog


class _Timer:
    def __init__(self, clock: "FakeClock", when: float, callback: Callable[[], object]) -> None:
        self.clock, self.when, self.callback, self.cancelled = clock, when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """An event loop's time and call_at, advanced by hand: timers run when their time comes."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[_Timer] = []
        self.armed = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> _Timer:
        timer = _Timer(self, when, callback)
        self.timers.append(timer)
        self.armed += 1
        return timer

    def advance_to(self, t: float) -> None:
        while True:
            due = [x for x in self.timers if not x.cancelled and x.when <= t]
            if not due:
                break
            timer = min(due, key=lambda x: x.when)
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
        self.now = t

    @property
    def pending(self) -> list[float]:
        return [x.when for x in self.timers if not x.cancelled]


def test_a_wait_that_lasts_the_timeout_expires_at_its_deadline() -> None:
    clock, fired = FakeClock(), []
    watch = Watchdog(clock, 10.0, lambda: fired.append(clock.now))
    clock.advance_to(3.0)
    watch.begin()
    clock.advance_to(12.9)
    assert fired == []
    clock.advance_to(13.0)
    assert fired == [13.0] and not watch.waiting
    clock.advance_to(100.0)
    assert fired == [13.0]  # once per wait


def test_short_waits_never_expire_and_move_the_timer_once_per_timeout() -> None:
    clock, fired = FakeClock(), []
    watch = Watchdog(clock, 10.0, lambda: fired.append(clock.now))
    for k in range(200):  # a message every 0.5 s for 100 s
        clock.advance_to(k * 0.5)
        watch.begin()
        clock.advance_to(k * 0.5 + 0.4)
        watch.end()
    assert fired == []
    assert clock.armed <= 11  # not 200 timers: one per 10 s at most
    watch.begin()  # then silence: expires 10 s after this wait began
    clock.advance_to(200.0)
    assert fired == [pytest.approx(99.9 + 10.0)]


def test_a_wait_after_a_pause_gets_its_full_timeout() -> None:
    """The timer armed by an earlier wait fires early for a later one and moves to its deadline."""
    clock, fired = FakeClock(), []
    watch = Watchdog(clock, 10.0, lambda: fired.append(clock.now))
    watch.begin()
    clock.advance_to(1.0)
    watch.end()
    clock.advance_to(9.0)  # not waiting (e.g. held back by backpressure)
    watch.begin()
    clock.advance_to(10.0)  # the first timer fires: this wait has lasted only 1 s
    assert fired == [] and clock.pending == [19.0]
    clock.advance_to(19.0)
    assert fired == [19.0]


def test_no_expiry_between_waits_and_none_after_cancel() -> None:
    clock, fired = FakeClock(), []
    watch = Watchdog(clock, 1.0, lambda: fired.append(clock.now))
    watch.begin()
    watch.end()
    clock.advance_to(5.0)
    assert fired == [] and clock.pending == []  # the timer fired, found no wait, and stopped
    watch.begin()
    watch.cancel()
    clock.advance_to(10.0)
    assert fired == [] and clock.pending == []


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        Watchdog(FakeClock(), 0.0, lambda: None)
