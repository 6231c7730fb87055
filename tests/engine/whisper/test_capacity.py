"""Measured capacity: the decoder's cost from timed decodes (a fake decoder of known cost on
a fake clock, never real time) and the streams that fit a latency budget."""

from __future__ import annotations

import pytest

from stt.engine.whisper.capacity import CostMeter, streams_within
from stt.engine.whisper.decode_queue import DecodeQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CostlyDecoder:
    """Each decode 'takes' `cost_s` of the fake clock; a failure takes time but measures nothing."""

    def __init__(self, clock: Clock, cost_s: float) -> None:
        self.clock = clock
        self.cost_s = cost_s

    def __call__(self, request: str) -> str:
        self.clock.now += self.cost_s
        if request == "boom":
            raise ValueError("decode failed")
        return request.upper()


def test_the_queue_times_each_decode_and_the_meter_averages_it() -> None:
    clock = Clock()
    decoder = CostlyDecoder(clock, 0.25)
    meter = CostMeter()
    queue: DecodeQueue[str, str] = DecodeQueue(decoder, clock=clock, on_cost=meter.observe)
    try:
        assert queue.submit(0, "a").future.result(5) == "A"
        assert (meter.cost_s, meter.samples) == (0.25, 1)
        with pytest.raises(ValueError):
            queue.submit(1, "boom", final=True).future.result(5)
        assert meter.samples == 1  # a failed decode is no measurement
        decoder.cost_s = 0.5  # the machine got slower: the average follows
        for request in "bcd":
            queue.submit(0, request).future.result(5)
    finally:
        queue.close()
    assert meter.samples == 4
    expected = 0.25
    for _ in range(3):
        expected += 0.2 * (0.5 - expected)
    assert meter.cost_s == pytest.approx(expected)
    assert 0.25 < meter.cost_s < 0.5


def test_a_batch_counts_as_its_windows() -> None:
    meter = CostMeter()
    meter.observe(1.2, windows=4)
    assert meter.cost_s == pytest.approx(0.3)
    with pytest.raises(ValueError):
        meter.observe(1.0, windows=0)


@pytest.mark.parametrize(
    ("budget_s", "cost_s", "limit", "streams"),
    [
        (1.0, 0.25, 16, 4),  # four decodes of 0.25 s fit in a second
        (1.0, 0.3, 16, 3),
        (1.0, 0.1, 16, 10),
        (1.0, 0.01, 16, 16),  # never more than the slot table
        (1.0, 3.5, 16, 1),  # a lone stream is always admitted
        (2.0, 0.5, 16, 4),
        (1.0, 0.0, 8, 8),
    ],
)
def test_streams_within_the_budget(budget_s: float, cost_s: float, limit: int, streams: int) -> None:
    assert streams_within(budget_s, cost_s, limit) == streams


def test_the_streams_admitted_follow_the_measured_cost_of_a_slow_decoder() -> None:
    """A decoder of 0.25 s admits 4 streams in a 1 s budget; once it takes 0.5 s (a busier
    machine) the moving average brings the admission down to 2, and back up when it recovers."""
    clock = Clock()
    decoder = CostlyDecoder(clock, 0.25)
    meter = CostMeter()
    queue: DecodeQueue[str, str] = DecodeQueue(decoder, clock=clock, on_cost=meter.observe)

    def admitted_after(decodes: int) -> int:
        for i in range(decodes):
            queue.submit(i % 3, f"r{i}").future.result(5)
        assert meter.cost_s is not None
        return streams_within(1.0, meter.cost_s, 16)

    try:
        assert admitted_after(1) == 4
        decoder.cost_s = 0.5
        assert admitted_after(1) == 3  # one slow decode moves the average, not all the way
        assert admitted_after(30) == 2
        decoder.cost_s = 0.24  # the average nears it from above: 1 / 0.2401 s admits 4
        assert admitted_after(30) == 4
    finally:
        queue.close()
