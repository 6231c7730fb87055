"""The shared decode worker: oldest job first, partials coalesce, a wake-up per finished job."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest

from stt.engine.whisper.decode_queue import DecodeQueue, Shares


class GatedDecoder:
    """Records what it decodes on which thread; blocks until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: str) -> str:
        self.started.set()
        self.gate.wait(10)
        self.calls.append((request, threading.current_thread().name))
        if request == "boom":
            raise ValueError("decode failed")
        return request.upper()


@pytest.fixture
def decoder() -> GatedDecoder:
    return GatedDecoder()


@pytest.fixture
def queue(decoder: GatedDecoder) -> Iterator[DecodeQueue[str, str]]:
    q: DecodeQueue[str, str] = DecodeQueue(decoder, name="worker")
    yield q
    decoder.gate.set()
    q.close()


def block_worker(queue: DecodeQueue[str, str], decoder: GatedDecoder) -> None:
    queue.submit(99, "blocker")
    assert decoder.started.wait(5)


def test_the_job_that_waited_longest_runs_first(queue: DecodeQueue[str, str], decoder: GatedDecoder) -> None:
    block_worker(queue, decoder)
    a1 = queue.submit(1, "a1")
    b = queue.submit(2, "b")
    a2 = queue.submit(1, "a2")  # replaces a1 but keeps its place, ahead of b
    decoder.gate.set()
    assert b.future.result(5) == "B" and a2.future.result(5) == "A2"
    assert a1.future.cancelled()
    assert [request for request, _ in decoder.calls] == ["blocker", "a2", "b"]
    assert queue.submitted == 4  # a replaced job was queued too


def test_final_jobs_are_never_replaced(queue: DecodeQueue[str, str], decoder: GatedDecoder) -> None:
    block_worker(queue, decoder)
    final = queue.submit(1, "final", final=True)
    partial = queue.submit(1, "partial")
    decoder.gate.set()
    assert final.future.result(5) == "FINAL" and partial.future.result(5) == "PARTIAL"


def test_wake_after_resolves_when_a_job_finishes_after_the_count_was_read(
    queue: DecodeQueue[str, str], decoder: GatedDecoder
) -> None:
    block_worker(queue, decoder)
    job = queue.submit(1, "mine", final=True)
    seen = queue.decodes
    wake = queue.wake_after(seen)
    assert not wake.done() and queue.wake_after(seen) is wake  # one future for every waiter
    decoder.gate.set()
    wake.result(timeout=5)  # the blocker finished; `mine` may not have yet
    assert queue.decodes > seen
    job.future.result(timeout=5)
    assert queue.wake_after(seen).done(), "a job finished since `seen`: nothing to wait for"
    assert ("mine", "worker") in decoder.calls, "decodes run on the worker, never on the caller"


def test_cancel_drops_a_waiting_job_and_errors_reach_the_caller(
    queue: DecodeQueue[str, str], decoder: GatedDecoder
) -> None:
    block_worker(queue, decoder)
    dropped = queue.submit(1, "dropped")
    queue.cancel(dropped)
    failing = queue.submit(2, "boom")
    decoder.gate.set()
    with pytest.raises(ValueError, match="decode failed"):
        failing.future.result(timeout=5)
    assert dropped.future.cancelled()
    assert "dropped" not in [request for request, _ in decoder.calls]


def test_final_decodes_run_before_partial_ones(queue: DecodeQueue[str, str], decoder: GatedDecoder) -> None:
    block_worker(queue, decoder)
    partial = queue.submit(1, "partial")
    final = queue.submit(2, "final", final=True)
    decoder.gate.set()
    assert partial.future.result(5) == "PARTIAL" and final.future.result(5) == "FINAL"
    assert [request for request, _ in decoder.calls] == ["blocker", "final", "partial"]


def test_an_expedited_final_runs_on_the_flush_thread_while_the_worker_is_busy() -> None:
    busy, release = threading.Event(), threading.Event()
    threads: dict[str, str] = {}

    def decode(request: str) -> str:
        threads[request] = threading.current_thread().name
        if request == "long":
            busy.set()
            assert release.wait(10)
        return request.upper()

    queue: DecodeQueue[str, str] = DecodeQueue(decode, name="worker")
    try:
        queue.submit(1, "long")
        assert busy.wait(5)
        other = queue.submit(2, "other final", final=True)
        flushed = queue.submit(3, "flushed", final=True)
        queue.expedite(flushed)
        assert flushed.future.result(timeout=5) == "FLUSHED"
        assert threads["flushed"] == "worker-flush"
        assert not other.future.done(), "the flush thread runs only what a flush waits for"
        release.set()
        assert other.future.result(timeout=5) == "OTHER FINAL" and threads["other final"] == "worker"
    finally:
        release.set()
        queue.close()


class BatchingDecoder(GatedDecoder):
    """Also decodes batches, recording each batch's requests."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def batch(self, requests: list[str]) -> list[str]:
        self.batches.append(list(requests))
        return [self(request) for request in requests]


class Ticks:
    """A clock that advances one tick per reading: every event has a time of its own."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_waiting_jobs_are_decoded_together_finals_first_then_the_stalest() -> None:
    decoder = BatchingDecoder()
    queue: DecodeQueue[str, str] = DecodeQueue(
        decoder, decode_batch=decoder.batch, max_batch=3, name="worker", clock=Ticks()
    )
    try:
        queue.submit(1, "a1")  # slot 1's decode starts at once: its staleness counts from then
        assert decoder.started.wait(5)
        b = queue.submit(2, "b")  # waiting since after a1 began
        c = queue.submit(3, "c")
        a2 = queue.submit(1, "a2")  # queued last, but slot 1 has waited since a1 began
        final = queue.submit(4, "final", final=True)
        decoder.gate.set()
        assert [j.future.result(5) for j in (final, a2, b, c)] == ["FINAL", "A2", "B", "C"]
    finally:
        queue.close()
    assert [request for request, _ in decoder.calls] == ["a1", "final", "a2", "b", "c"]
    assert decoder.batches == [["final", "a2", "b"]]  # c, alone, is a decode of one
    assert queue.decodes == 5


def test_a_failed_batch_fails_each_of_its_jobs_and_a_batch_needs_a_batch_decoder() -> None:
    decoder = GatedDecoder()

    def failing(requests: list[str]) -> list[str]:
        raise ValueError("batch failed")

    queue: DecodeQueue[str, str] = DecodeQueue(decoder, decode_batch=failing, max_batch=4)
    try:
        block_worker(queue, decoder)
        jobs = [queue.submit(slot, "y", final=True) for slot in range(3)]
        decoder.gate.set()
        for job in jobs:
            with pytest.raises(ValueError, match="batch failed"):
                job.future.result(5)
    finally:
        queue.close()
    with pytest.raises(ValueError, match="needs decode_batch"):
        DecodeQueue(str.upper, max_batch=2)


def test_a_decode_that_may_give_a_first_word_goes_before_staler_partials(
    queue: DecodeQueue[str, str], decoder: GatedDecoder
) -> None:
    """After the finals, a stream whose utterance has no word out yet goes first: its user
    has seen nothing; a stream already streaming words waits its turn."""
    block_worker(queue, decoder)
    streaming = queue.submit(1, "streaming")
    fresh = queue.submit(2, "fresh", first=True)
    final = queue.submit(3, "final", final=True)
    decoder.gate.set()
    for job in (streaming, fresh, final):
        job.future.result(5)
    assert [request for request, _ in decoder.calls] == ["blocker", "final", "fresh", "streaming"]


class PerRequestGates:
    """Each request blocks on a gate of its own, so a test lets decodes finish one by one."""

    def __init__(self) -> None:
        self.gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.started: defaultdict[str, threading.Event] = defaultdict(threading.Event)

    def __call__(self, request: str) -> str:
        self.started[request].set()
        assert self.gates[request].wait(10)
        return request.upper()


def test_two_workers_decode_two_streams_at_once_but_one_streams_partials_in_turn() -> None:
    decoder = PerRequestGates()
    queue: DecodeQueue[str, str] = DecodeQueue(decoder, name="worker", workers=2)
    try:
        a = queue.submit(1, "a")
        b = queue.submit(2, "b")
        assert decoder.started["a"].wait(5) and decoder.started["b"].wait(5)  # both at once
        decoder.gates["b"].set()
        assert b.future.result(5) == "B"
        a2 = queue.submit(1, "a2")  # stalest in line, but stream 1 is still being decoded
        c = queue.submit(3, "c")
        assert decoder.started["c"].wait(5)  # the free worker passed a2 over for c
        assert not decoder.started["a2"].is_set()
        decoder.gates["a"].set()
        decoder.gates["a2"].set()
        assert a.future.result(5) == "A" and a2.future.result(5) == "A2"
        decoder.gates["c"].set()
        assert c.future.result(5) == "C"
    finally:
        for gate in decoder.gates.values():
            gate.set()
        queue.close()


class Manual:
    """A clock the test sets."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_overlapping_decodes_are_charged_their_share_of_the_time() -> None:
    """a runs 0-2 s and b 1-4 s: from 1 to 2 s they share the machine, so a costs 1 + 0.5 s
    and b 0.5 + 2 s, 4 s in all for 4 s of a busy decoder."""
    decoder = PerRequestGates()
    clock = Manual()
    costs: list[tuple[float, int]] = []
    queue: DecodeQueue[str, str] = DecodeQueue(
        decoder, name="worker", workers=2, clock=clock, on_cost=lambda s, n: costs.append((s, n))
    )
    try:
        a = queue.submit(1, "a")
        assert decoder.started["a"].wait(5)
        clock.now = 1.0
        b = queue.submit(2, "b")
        assert decoder.started["b"].wait(5)
        clock.now = 2.0
        decoder.gates["a"].set()
        assert a.future.result(5) == "A"
        clock.now = 4.0
        decoder.gates["b"].set()
        assert b.future.result(5) == "B"
        assert costs == [(1.5, 1), (2.5, 1)]
    finally:
        for gate in decoder.gates.values():
            gate.set()
        queue.close()


def test_shares_divide_each_moment_among_the_calls_running_then() -> None:
    shares = Shares()
    shares.start(1, 0.0)
    shares.start(2, 1.0)
    shares.start(3, 2.0)
    assert shares.finish(1, 3.0) == pytest.approx(1 + 1 / 2 + 1 / 3)
    assert shares.finish(2, 5.0) == pytest.approx(1 / 2 + 1 / 3 + 2 / 2)
    assert shares.finish(3, 6.0) == pytest.approx(1 / 3 + 2 / 2 + 1)
    with pytest.raises(ValueError, match="at least one worker"):
        DecodeQueue(str.upper, workers=0)


class Overlaps(PerRequestGates):
    """Also records, as each decode starts, the decodes running beside it."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.running: set[str] = set()
        self.beside: dict[str, set[str]] = {}

    def __call__(self, request: str) -> str:
        with self._lock:
            self.beside[request] = set(self.running)
            self.running.add(request)
        try:
            return super().__call__(request)
        finally:
            with self._lock:
                self.running.discard(request)


def test_with_two_workers_a_flushed_final_holds_back_a_third_decode() -> None:
    decoder = Overlaps()
    queue: DecodeQueue[str, str] = DecodeQueue(decoder, name="worker", workers=2)
    try:
        a, b = queue.submit(1, "a"), queue.submit(2, "b")
        assert decoder.started["a"].wait(5) and decoder.started["b"].wait(5)
        flushed = queue.submit(3, "flushed", final=True)
        queue.expedite(flushed)
        assert decoder.started["flushed"].wait(5)  # the flush thread runs it beside both
        c = queue.submit(4, "c")
        decoder.gates["b"].set()
        assert b.future.result(5) == "B"
        decoder.gates["flushed"].set()
        assert flushed.future.result(5) == "FLUSHED"
        assert decoder.started["c"].wait(5)
        assert decoder.beside["c"] == {"a"}, "c waited for the flushed final, not just for b"
        decoder.gates["a"].set()
        decoder.gates["c"].set()
        assert a.future.result(5) == "A" and c.future.result(5) == "C"
    finally:
        for gate in decoder.gates.values():
            gate.set()
        queue.close()
