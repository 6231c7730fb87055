"""The async scheduler: engine thread, no blocking, join/leave, failures, offline path."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from stt.audio import split_frames
from stt.engine.fake.tones import encode_text
from stt.engine.interface import EngineEvent, StreamOptions
from stt.planner import Frames
from stt.scheduler import EngineFailedError, NoCapacityError, Scheduler, StreamHandle
from tests.fakes import AckDroppingEngine, FailingEngine, LateAckEngine, Listener, RecordingEngine


async def wait_until(predicate: object, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def send(handle: object, text: str, *, end: bool = True) -> None:
    frames, tail = split_frames(encode_text(text))
    handle.push(frames)  # type: ignore[attr-defined]
    handle.finalize(tail, end=end)  # type: ignore[attr-defined]


def test_steps_run_on_the_engine_thread_and_warmup_first() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=1)
        scheduler = Scheduler(engine)
        await scheduler.start()
        assert engine.inner.steps == 2  # warmup
        listener = Listener()
        handle = scheduler.open(listener)
        assert handle is not None
        send(handle, "thread")
        await wait_until(lambda: listener.finished)
        await scheduler.stop()
        assert listener.text == "thread"
        names = {r.thread for r in engine.records}
        assert names and all(n.startswith("stt-engine") for n in names)
        assert threading.current_thread().name not in names
        assert engine.closed

    asyncio.run(main())


def test_event_loop_stays_responsive_during_slow_steps() -> None:
    async def main() -> float:
        engine = RecordingEngine(slots=4, delay_frames=0, step_cost_s=0.1)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        listeners = [Listener() for _ in range(4)]
        for i, listener in enumerate(listeners):
            handle = scheduler.open(listener)
            assert handle is not None
            send(handle, f"slow{i}")
        worst = 0.0
        while not all(listener.finished for listener in listeners):
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - before - 0.01)
        await scheduler.stop()
        assert [listener.text for listener in listeners] == [f"slow{i}" for i in range(4)]
        return worst

    lag = asyncio.run(main())
    assert lag < 0.05, f"event loop blocked for {lag:.3f} s while steps of 0.1 s ran"


def test_admission_is_bounded_and_rows_never_exceed_max_batch() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=3, delay_frames=2)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        handles = [scheduler.open(Listener()) for _ in range(5)]
        assert sum(h is not None for h in handles) == 3
        assert scheduler.used_slots == scheduler.total_slots == 3
        for h in handles:
            if h is not None:
                send(h, "abc def")
        await wait_until(lambda: scheduler.used_slots == 0)
        await scheduler.stop()
        assert max(len(r.slots) for r in engine.records) <= 3

    asyncio.run(main())


def test_streams_join_and_leave_a_running_batch() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=2, step_cost_s=0.002)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        long_listener = Listener()
        long_handle = scheduler.open(long_listener)
        assert long_handle is not None
        long_text = " ".join(f"w{i}" for i in range(30))
        frames, tail = split_frames(encode_text(long_text))
        long_handle.push(frames[:40])  # the long stream is mid-way when others come and go

        leaver = Listener()
        leaving = scheduler.open(leaver)
        assert leaving is not None
        leaving.push(split_frames(encode_text("zzzz zzzz"))[0][:3])
        await asyncio.sleep(0.01)
        leaving.close()  # disconnect mid-word

        joiner = Listener()
        joining = scheduler.open(joiner)
        assert joining is not None and joining.slot == 1  # the freed slot is reused
        send(joining, "fresh")
        long_handle.push(frames[40:])
        long_handle.finalize(tail, end=True)
        await wait_until(lambda: long_listener.finished and joiner.finished)
        await scheduler.stop()
        assert long_listener.text == long_text
        assert joiner.text == "fresh"  # nothing of the stream that left before it
        assert leaver.words == [] or all("z" in w.text for w in leaver.words)
        joiner_steps = [r for r in engine.records if 1 in r.slots]
        first = next(r for r in joiner_steps if r.reset[r.slots.index(1)])
        assert first is not None

    asyncio.run(main())


def test_a_backlogged_stream_does_not_delay_a_real_time_one() -> None:
    """Each step carries every ready stream: a 10 s burst does not queue ahead of others."""

    async def main() -> tuple[float, float]:
        engine = RecordingEngine(slots=2, delay_frames=0, step_cost_s=0.005)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        bulk, live = Listener(), Listener()
        bulk_handle, live_handle = scheduler.open(bulk), scheduler.open(live)
        assert bulk_handle is not None and live_handle is not None
        bulk_text = " ".join(["backlog"] * 15)  # 120 frames ~ 0.6 s of steps at 5 ms
        send(bulk_handle, bulk_text)
        started = time.perf_counter()
        send(live_handle, "hi")
        await wait_until(lambda: live.finished)
        live_done = time.perf_counter() - started
        await wait_until(lambda: bulk.finished)
        bulk_done = time.perf_counter() - started
        await scheduler.stop()
        assert bulk.text == bulk_text and live.text == "hi"
        return live_done, bulk_done

    live_done, bulk_done = asyncio.run(main())
    assert live_done < bulk_done / 3, (live_done, bulk_done)


def test_engine_failure_fails_only_the_streams_of_that_step() -> None:
    poison = split_frames(encode_text("x", gap_frames=0))[0][0]

    def is_poisoned(batch: object) -> bool:
        return any(np.array_equal(f, poison) for f in batch.frames)  # type: ignore[attr-defined]

    async def main() -> None:
        engine = FailingEngine(is_poisoned, slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        victim = Listener()
        handle = scheduler.open(victim)
        assert handle is not None
        send(handle, "x")
        await wait_until(lambda: victim.error is not None)
        assert scheduler.stats.failed_steps == 1 and scheduler.used_slots == 0
        survivor = Listener()
        handle = scheduler.open(survivor)
        assert handle is not None
        send(handle, "fine")
        await wait_until(lambda: survivor.finished)
        await scheduler.stop()
        assert survivor.text == "fine"

    asyncio.run(main())


def test_offline_transcribe_shares_the_batch_with_live_streams() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=2, delay_frames=3)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        live = Listener()
        handle = scheduler.open(live)
        assert handle is not None
        send(handle, "live words")
        words = await scheduler.transcribe(encode_text("offline clip"), StreamOptions(language="en"))
        await wait_until(lambda: live.finished)
        await scheduler.stop()
        assert [w.text for w in words] == ["offline", "clip"]
        assert live.text == "live words"
        assert any(len(r.slots) == 2 for r in engine.records)  # they really shared steps

    asyncio.run(main())


def test_offline_waits_for_a_slot_then_times_out() -> None:
    async def main() -> None:
        engine = RecordingEngine(slots=1, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        holder = scheduler.open(Listener())
        assert holder is not None
        with pytest.raises(NoCapacityError):
            await scheduler.transcribe(encode_text("wait"), slot_wait_s=0.05)
        task = asyncio.create_task(scheduler.transcribe(encode_text("queued"), slot_wait_s=5))
        await asyncio.sleep(0.05)
        holder.close()
        words = await task
        await scheduler.stop()
        assert [w.text for w in words] == ["queued"]

    asyncio.run(main())


def test_offline_transcribe_reports_engine_failure() -> None:
    async def main() -> None:
        scheduler = Scheduler(FailingEngine(lambda batch: True, slots=1))
        await scheduler.start(warmup=False)
        with pytest.raises(EngineFailedError):
            await scheduler.transcribe(encode_text("boom"))
        await scheduler.stop()

    asyncio.run(main())


def test_batch_wait_gathers_frames_into_one_step() -> None:
    async def main() -> list[int]:
        engine = RecordingEngine(slots=3, delay_frames=0)
        scheduler = Scheduler(engine, batch_wait_s=0.05)
        await scheduler.start(warmup=False)
        await asyncio.sleep(0.01)  # let the loop go idle: the wait applies after idle periods
        handles = [scheduler.open(Listener()) for _ in range(3)]
        frame = split_frames(encode_text("a"))[0][:1]
        for h in handles:
            assert h is not None
            h.push(frame)
            await asyncio.sleep(0.005)
        await wait_until(lambda: engine.records)
        await scheduler.stop()
        return [len(r.slots) for r in engine.records]

    assert asyncio.run(main()) == [3]


def test_step_observers_see_every_step() -> None:
    async def main() -> list[tuple[float, int]]:
        seen: list[tuple[float, int]] = []
        scheduler = Scheduler(RecordingEngine(slots=1, delay_frames=0))
        scheduler.add_step_observer(lambda seconds, rows: seen.append((seconds, rows)))
        await scheduler.start(warmup=False)
        listener = Listener()
        handle = scheduler.open(listener)
        assert handle is not None
        send(handle, "ab")
        await wait_until(lambda: listener.finished)
        await scheduler.stop()
        assert scheduler.stats.steps == len(seen)
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 4 and all(rows == 1 and seconds >= 0 for seconds, rows in seen)


def test_a_stream_holds_its_slot_for_its_block_whatever_ends_it() -> None:
    async def main() -> None:
        scheduler = Scheduler(RecordingEngine(slots=1, delay_frames=0))
        await scheduler.start(warmup=False)
        with pytest.raises(ValueError, match="handler failed"):
            async with scheduler.stream(Listener()) as handle:
                assert scheduler.used_slots == 1 and handle.slot == 0
                with pytest.raises(NoCapacityError, match="all 1 slots are busy; retry later"):
                    async with scheduler.stream(Listener()):
                        pass
                raise ValueError("handler failed")
        assert scheduler.used_slots == 0 and handle.closed
        listener = Listener()
        async with scheduler.stream(listener) as handle:  # the slot serves the next stream
            send(handle, "again")
            await wait_until(lambda: listener.finished)
        await scheduler.stop()
        assert listener.text == "again" and scheduler.used_slots == 0


@dataclass
class Signalled(Listener):
    """A listener whose deliveries the test can await (callbacks run on the event loop)."""

    word: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_events(self, events: Sequence[EngineEvent]) -> None:
        super().on_events(events)
        if self.words:
            self.word.set()

    def on_finished(self) -> None:
        super().on_finished()
        self.done.set()

    def on_failed(self, error: BaseException) -> None:
        super().on_failed(error)
        self.done.set()


class RecordingPort:
    """A StreamPort that records what a handle asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def slot_of(self, stream_id: int) -> int:
        self.calls.append(("slot_of", stream_id))
        return 3

    def backlog(self, stream_id: int) -> int:
        self.calls.append(("backlog", stream_id))
        return 2

    def configure(self, stream_id: int, options: StreamOptions) -> None:
        self.calls.append(("configure", stream_id))

    def push(self, stream_id: int, frames: Frames) -> None:
        self.calls.append(("push", stream_id))

    def finalize(self, stream_id: int, tail: Frames, *, end: bool) -> None:
        self.calls.append(("finalize", stream_id))

    def release(self, stream_id: int) -> None:
        self.calls.append(("release", stream_id))


def test_a_handle_speaks_only_to_its_port_for_its_own_stream() -> None:
    port = RecordingPort()
    handle = StreamHandle(port, 7)
    frames, tail = split_frames(encode_text("port"))
    assert (handle.slot, handle.backlog_frames) == (3, 2)
    handle.configure(StreamOptions(language="fr"))
    handle.push(frames[:0])  # nothing to queue: the port is not bothered
    handle.push(frames)
    handle.finalize(tail, end=True)
    handle.close()
    handle.close()
    assert handle.closed
    assert port.calls == [
        ("slot_of", 7),
        ("backlog", 7),
        ("configure", 7),
        ("push", 7),
        ("finalize", 7),
        ("release", 7),
    ]


def test_a_late_acknowledgement_holds_the_slot_and_never_holds_up_other_streams() -> None:
    async def main() -> None:
        engine = LateAckEngine(slots=2, delay_frames=0)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        ending, going = Signalled(), Signalled()
        flush_stepped, b_planned = asyncio.Event(), asyncio.Event()
        async with scheduler.stream(ending) as a, scheduler.stream(going) as b:

            def observe(seconds: float, rows: int) -> None:
                if any(engine.records[-1].flush):
                    flush_stepped.set()
                if flush_stepped.is_set() and going.words and b.backlog_frames == 0:
                    b_planned.set()

            scheduler.add_step_observer(observe)
            send(a, "bye")
            await asyncio.wait_for(flush_stepped.wait(), 5)
            assert not ending.finished and scheduler.used_slots == 2
            with pytest.raises(NoCapacityError):  # a stream awaiting its end keeps its slot
                async with scheduler.stream(Listener()):
                    pass
            b.push(split_frames(encode_text("still here"))[0])
            await asyncio.wait_for(b_planned.wait(), 5)  # b's words came while a's end was pending
            assert going.text.startswith("still") and not ending.finished
            steps = len(engine.records)
            engine.release()  # a's last words land with no frame waiting: the wake runs a step
            await asyncio.wait_for(ending.done.wait(), 5)
            assert ending.events == ["word:bye", "finished"]
            assert [r.slots for r in engine.records[steps:]] == [[]], "one collecting step, no rows"
            assert scheduler.used_slots == 1
        await scheduler.stop()

    asyncio.run(main())


def test_a_flush_the_engine_never_acknowledges_fails_that_stream_instead_of_hanging() -> None:
    async def main() -> None:
        scheduler = Scheduler(AckDroppingEngine(slots=2))
        await scheduler.start(warmup=False)
        broken = Signalled()
        async with scheduler.stream(broken) as handle:
            send(handle, "x")
            await asyncio.wait_for(broken.done.wait(), 5)
        assert isinstance(broken.error, RuntimeError) and scheduler.used_slots == 0
        await scheduler.stop()

    asyncio.run(main())


def test_offline_transcribe_waits_for_acknowledgements_that_land_later() -> None:
    async def main() -> list[str]:
        engine = LateAckEngine(land_at_once=True, slots=2, delay_frames=2)
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        words = await scheduler.transcribe(encode_text("late words"))
        await scheduler.stop()
        assert any(not r.slots for r in engine.records), "the last words came in a collecting step"
        return [w.text for w in words]

    assert asyncio.run(main()) == ["late", "words"]
