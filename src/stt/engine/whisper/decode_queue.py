"""Decode worker threads shared by every stream, fair across streams (and a flush thread).

`step()` must stay cheap, so a streaming engine hands its slow decodes to this worker and
picks the results up in a later step. Final decodes (an utterance ended: its words are due)
run before partial ones (previews that only speed words up); then the partial ones that may
give an utterance's *first* word (its user sees the stream is heard; a stream already
streaming words waits a turn; the engine marks an utterance so for a few seconds only, so
speech that gives no words cannot hold the others back); among the others the *stalest*
stream goes first: the one whose last decode began longest ago (a stream not yet decoded
counts from when its job was queued), so no stream starves and the one whose words are
oldest catches up first. A newer partial decode of a slot replaces one still waiting (it
covers the same audio and more) but keeps its place in the line; final decodes are never
replaced. With 8 streams on 2 cores, finals first cut the final latency from 1.8 to 1.2 s
and made every other latency shorter too.

With `decode_batch` and `max_batch` > 1, a thread takes up to `max_batch` waiting jobs in
that order and decodes them in one call (the model runs a batch of windows at once).

With `workers` > 1, that many threads take jobs in that order, one stream's partial decodes
never two at once (a newer one waits for the running one: it covers the same audio and more),
and no more than `workers` decodes at once, the flush thread's included: a worker waits while
a flushed stream's final runs, which would otherwise wait for the CPU and the encoder behind
two partial decodes (with one worker the flush thread runs beside it, as before). The Whisper
engine runs two: while one generates on its single thread, the other encodes.

A second thread runs only *expedited* jobs: the final decode a flush is waiting for (a
Finalize or an end of stream). It keeps the concurrency of the former design, in which the
engine thread ran a flushed stream's final decode itself (stalling every stream meanwhile),
so a stream's end neither waits behind the others' decodes nor holds up their partial ones.

Every decode is timed (`clock`) and reported to `on_cost(seconds, windows)`: the engine's
measured capacity follows what the decoder really sustains (`stt.engine.whisper.capacity`).
Decodes that overlap share the machine, so each is charged its `Shares`: the time it ran,
each moment divided among the calls running then (two decodes side by side for 0.7 s cost
0.35 s each), which is what it takes from the decoder's throughput.

The engine thread never runs or waits for a decode: it reads finished futures in its steps
and asks `wake_after` for a future that resolves when the next job finishes, which the
scheduler awaits to run a step that collects the result. The decode function releases the
GIL (CTranslate2 does), so the engine thread keeps stepping other streams meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_Req = TypeVar("_Req")
_Res = TypeVar("_Res")


class Shares:
    """Processor-sharing accounting of calls that run at once: each moment of a call's run
    counts 1/n of itself when n calls run. Not locked: the queue's lock guards it."""

    def __init__(self) -> None:
        self._running: dict[int, float] = {}
        self._since = 0.0

    @property
    def running(self) -> int:
        """Calls started and not finished."""
        return len(self._running)

    def start(self, key: int, now: float) -> None:
        self._advance(now)
        self._running[key] = 0.0

    def finish(self, key: int, now: float) -> float:
        """The call's share of the time since it started."""
        self._advance(now)
        return self._running.pop(key)

    def _advance(self, now: float) -> None:
        if self._running:
            each = max(0.0, now - self._since) / len(self._running)
            for key in self._running:
                self._running[key] += each
        self._since = now


@dataclass(eq=False)
class Job(Generic[_Req, _Res]):
    """One decode request of a slot and the future of its result."""

    slot: int
    request: _Req
    final: bool
    first: bool = False
    """A partial decode of an utterance that has no word out yet: it may give the first."""
    expedited: bool = False
    """A flush waits for it: the flush thread may run it too."""
    submitted_s: float = field(default_factory=time.monotonic)
    future: Future[_Res] = field(default_factory=Future)


class DecodeQueue(Generic[_Req, _Res]):
    """Waiting jobs of all slots and the threads that run them: the worker (finals first,
    then the oldest) and the flush thread (expedited jobs only, the oldest first)."""

    def __init__(
        self,
        decode: Callable[[_Req], _Res],
        *,
        decode_batch: Callable[[list[_Req]], list[_Res]] | None = None,
        max_batch: int = 1,
        name: str = "decode",
        clock: Callable[[], float] = time.perf_counter,
        on_cost: Callable[[float, int], None] | None = None,
        workers: int = 1,
    ) -> None:
        """`decode_batch` decodes several requests in one call (results in their order);
        `on_cost(seconds, windows)` is called on the decode thread after each decode call
        with its share of the `clock` time; a failed decode is not a measurement; `workers`
        threads take the jobs in order (besides the flush thread)."""
        if max_batch < 1 or (max_batch > 1 and decode_batch is None):
            raise ValueError("max_batch > 1 needs decode_batch")
        if workers < 1:
            raise ValueError(f"a decode queue needs at least one worker, got {workers}")
        self._decode = decode
        self._decode_batch = decode_batch
        self._max_batch = max_batch
        self._last_run: dict[int, float] = {}
        """Per slot: when its last decode began (staleness counts from it)."""
        self._clock = clock
        self._on_cost = on_cost
        self._waiting: list[Job[_Req, _Res]] = []
        self._running: list[Job[_Req, _Res]] = []
        self._shares = Shares()
        """The decode calls running, the flush thread's included, one per thread (its ident)."""
        self._workers = workers
        self._cond = threading.Condition()
        self._closed = False
        self.decodes = 0
        """Jobs run so far; for tests and metrics."""
        self.submitted = 0
        """Jobs queued so far (counted on the submitting thread, so no running decode moves it)."""
        self._wake: Future[None] | None = None
        """Resolved when the next job finishes (created on demand by `wake_after`)."""
        self._threads = [
            *(
                threading.Thread(
                    target=self._run, args=(False,), name=name if i == 0 else f"{name}-{i + 1}", daemon=True
                )
                for i in range(workers)
            ),
            threading.Thread(target=self._run, args=(True,), name=f"{name}-flush", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, slot: int, request: _Req, *, final: bool = False, first: bool = False
    ) -> Job[_Req, _Res]:
        """Queue a decode; a waiting partial job of the same slot is replaced (and cancelled).
        `first`: a partial decode that may give its utterance's first word."""
        job: Job[_Req, _Res] = Job(slot, request, final, first, submitted_s=self._clock())
        with self._cond:
            if self._closed:
                raise RuntimeError("decode queue is closed")
            if not final:
                for i, old in enumerate(self._waiting):
                    if old.slot == slot and not old.final:
                        job.submitted_s = old.submitted_s  # keeps its place in the line
                        old.future.cancel()
                        del self._waiting[i]
                        break
            self._waiting.append(job)
            self.submitted += 1
            self._cond.notify_all()  # the two threads wait for different jobs
        return job

    def expedite(self, job: Job[_Req, _Res]) -> None:
        """A flush waits for this final job: let the flush thread take it if it still waits."""
        with self._cond:
            if job.final and job in self._waiting:
                job.expedited = True
                self._cond.notify_all()

    def cancel(self, job: Job[_Req, _Res]) -> None:
        """Drop a job if it still waits; a running one finishes and its result is ignored."""
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                job.future.cancel()

    def forget(self, slot: int) -> None:
        """A new stream takes `slot`: its staleness counts from its own first job."""
        with self._cond:
            self._last_run.pop(slot, None)

    def wake_after(self, seen: int) -> Future[None]:
        """A future that resolves once more than `seen` jobs have finished (`decodes` read
        before looking at the results, so a job finishing in between is never missed)."""
        with self._cond:
            if self.decodes > seen or self._closed:
                done: Future[None] = Future()
                done.set_result(None)
                return done
            if self._wake is None:
                self._wake = Future()
            return self._wake

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self) -> None:
        """Stop the worker after the job it is running; waiting jobs are cancelled."""
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job.future.cancel()
            self._waiting.clear()
            self._cond.notify_all()
            self._resolve_wake()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, expedited_only: bool) -> None:
        while True:
            with self._cond:
                while not self._closed and not (jobs := self._next(expedited_only)):
                    self._cond.wait()
                if self._closed or not jobs:
                    return
                for job in jobs:
                    self._waiting.remove(job)
                self._running += jobs
                now = self._clock()
                self._shares.start(threading.get_ident(), now)
                for job in jobs:
                    self._last_run[job.slot] = now
            self._execute(jobs)

    def _next(self, expedited_only: bool) -> list[Job[_Req, _Res]]:
        """Under the lock: the jobs this thread runs next, in one call (none: wait)."""
        if expedited_only:
            line = sorted((j for j in self._waiting if j.expedited), key=lambda j: j.submitted_s)
        else:
            if self._workers > 1 and self._shares.running >= self._workers:
                return []
            busy = {j.slot for j in self._running}
            ready = (j for j in self._waiting if j.final or j.slot not in busy)
            line = sorted(ready, key=lambda j: (not j.final, not j.first, self._since(j)))
        return line[: self._max_batch]

    def _since(self, job: Job[_Req, _Res]) -> float:
        """Under the lock: when the job's stream last had news, the smaller the staler."""
        return min(self._last_run.get(job.slot, job.submitted_s), job.submitted_s)

    def _execute(self, jobs: list[Job[_Req, _Res]]) -> None:
        taken = jobs
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            self._release(taken)
            return
        try:
            if len(jobs) == 1:
                results = [self._decode(jobs[0].request)]
            else:
                assert self._decode_batch is not None  # max_batch > 1 only with decode_batch
                results = self._decode_batch([job.request for job in jobs])
        except BaseException as exc:  # the engine thread reads it from the futures
            self._release(taken)
            for job in jobs:
                job.future.set_exception(exc)
        else:
            share = self._release(taken)
            if self._on_cost is not None:
                self._on_cost(share, len(jobs))
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)
        with self._cond:
            self.decodes += len(jobs)
            self._resolve_wake()

    def _release(self, taken: list[Job[_Req, _Res]]) -> float:
        """This thread's call is over: its jobs no longer run (a stream's next partial and a
        waiting worker may go), and its share of the time since it started."""
        with self._cond:
            for job in taken:
                self._running.remove(job)
            self._cond.notify_all()
            return self._shares.finish(threading.get_ident(), self._clock())

    def _resolve_wake(self) -> None:
        """Under the lock: tell whoever waits that a step now has something to collect."""
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set_result(None)
