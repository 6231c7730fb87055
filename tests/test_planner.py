"""The planner: slot table, one frame per stream per step, owner tags, flush padding."""

import numpy as np
import pytest

from stt.audio import pcm16_to_float32, pcm16_view, split_frames
from stt.constants import FRAME_SAMPLES
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.engine.interface import FLUSHED, EngineInfo, StepOutput, StreamOptions, WordEvent
from stt.planner import Marker, Plan, StepPlanner, StreamClosedError, run_offline
from tests.fakes import AckDroppingEngine, LateAckEngine, Listener, RecordingEngine


def info(slots: int = 4, flush: int = 2) -> EngineInfo:
    return EngineInfo("test", max_batch=slots, delay_frames=flush, flush_frames=flush)


def frames(n: int, value: float = 0.0) -> np.ndarray:
    return np.full((n, FRAME_SAMPLES), value, dtype=np.float32)


def acked(plan: Plan) -> StepOutput:
    """No events; every flush row acknowledged in its own step (as Kyutai and the fake do)."""
    return StepOutput([[FLUSHED] if flush else [] for flush in plan.input.flush])


def drive(planner: StepPlanner, engine: FakeEngine) -> int:
    """Run plan -> step -> complete until idle; return the number of steps."""
    steps = 0
    while (plan := planner.plan()) is not None:
        planner.complete(plan, engine.step(plan.input))
        steps += 1
    return steps


def test_admission_is_bounded_by_slots_and_reuses_freed_slots() -> None:
    planner = StepPlanner(info(slots=2))
    a, b = planner.open(Listener()), planner.open(Listener())
    assert a is not None and b is not None
    assert {planner.slot_of(a), planner.slot_of(b)} == {0, 1}
    assert planner.open(Listener()) is None
    assert planner.used_slots == 2
    planner.close(a)
    c = planner.open(Listener())
    assert c is not None and c not in (a, b)
    assert planner.slot_of(c) == 0


def test_each_step_takes_one_frame_from_every_ready_stream() -> None:
    planner = StepPlanner(info(slots=3))
    ids = [planner.open(Listener()) for _ in range(3)]
    for i, n in zip(ids, (1, 3, 2), strict=True):
        assert i is not None
        planner.push(i, frames(n, value=i / 10))
    sizes = []
    while (plan := planner.plan()) is not None:
        assert len(set(plan.input.slots.tolist())) == len(plan)  # one row per slot
        assert len(plan) <= 3
        sizes.append(len(plan))
        planner.complete(plan, StepOutput([[] for _ in range(len(plan))]))
    assert sizes == [3, 2, 1]
    assert planner.steps == 3 and planner.frames_planned == 6


def test_frames_of_a_stream_are_planned_in_order_and_reset_only_first() -> None:
    planner = StepPlanner(info(slots=1))
    s = planner.open(Listener(), StreamOptions(language="fr"))
    assert s is not None
    audio = np.arange(3 * FRAME_SAMPLES, dtype=np.float32)
    planner.push(s, audio[:FRAME_SAMPLES].reshape(1, -1))
    planner.push(s, audio[FRAME_SAMPLES:].reshape(2, -1))
    seen, resets, options = [], [], []
    while (plan := planner.plan()) is not None:
        seen.append(plan.input.frames[0].copy())
        resets.append(bool(plan.input.reset[0]))
        options.append(plan.input.options[0])
        planner.complete(plan, StepOutput([[]]))
    np.testing.assert_array_equal(np.concatenate(seen), audio)
    assert resets == [True, False, False]
    assert options == [StreamOptions(language="fr"), None, None]


def test_reused_slot_never_receives_words_of_the_step_in_flight() -> None:
    planner = StepPlanner(info(slots=1))
    old, new = Listener(), Listener()
    a = planner.open(old)
    assert a is not None
    planner.push(a, frames(1))
    plan = planner.plan()  # the step is now "in flight" on the engine thread
    assert plan is not None
    planner.close(a)  # client left meanwhile
    b = planner.open(new)
    assert b is not None and planner.slot_of(b) == plan.input.slots[0]
    planner.complete(plan, StepOutput([[WordEvent("secret", 0.0, 0.08)]]))
    assert new.words == [] and old.words == []
    planner.push(b, frames(1))
    plan2 = planner.plan()
    assert plan2 is not None and plan2.input.reset[0]  # the new stream starts from a clean state


def test_finalize_pads_the_tail_and_flushes_on_the_last_padding_frame() -> None:
    planner = StepPlanner(info(slots=1, flush=2))
    listener = Listener()
    s = planner.open(listener)
    assert s is not None
    planner.push(s, frames(1, 0.5))
    planner.finalize(s, np.full(100, 0.25, dtype=np.float32), end=False)
    rows = []
    while (plan := planner.plan()) is not None:
        rows.append((plan.input.frames[0].copy(), bool(plan.input.flush[0]), plan.markers[0]))
        planner.complete(plan, acked(plan))
    assert len(rows) == 4  # 1 audio + tail frame + 2 flush frames
    tail_frame = rows[1][0]
    assert (tail_frame[:100] == 0.25).all() and (tail_frame[100:] == 0).all()
    assert [r[1] for r in rows] == [False, False, False, True]
    assert rows[-1][2] is Marker.FINALIZE
    assert listener.flushed == 1 and not listener.finished
    planner.push(s, frames(1))  # the stream stays open after Finalize


def test_flush_without_tail_or_flush_frames_still_gets_one_frame() -> None:
    planner = StepPlanner(info(slots=1, flush=0))
    listener = Listener()
    s = planner.open(listener)
    assert s is not None
    planner.finalize(s, np.zeros(0, np.float32), end=True)
    plan = planner.plan()
    assert plan is not None and len(plan) == 1 and plan.input.flush[0]
    planner.complete(plan, acked(plan))
    assert listener.finished and planner.used_slots == 0


def test_end_releases_the_slot_and_refuses_more_input() -> None:
    planner = StepPlanner(info(slots=1))
    listener = Listener()
    s = planner.open(listener)
    assert s is not None
    planner.finalize(s, np.zeros(10, np.float32), end=True)
    with pytest.raises(StreamClosedError):
        planner.push(s, frames(1))
    with pytest.raises(StreamClosedError):
        planner.finalize(s, np.zeros(0, np.float32), end=True)
    while (plan := planner.plan()) is not None:
        planner.complete(plan, acked(plan))
    assert listener.events == ["finished"]
    assert planner.used_slots == 0
    with pytest.raises(StreamClosedError):
        planner.push(s, frames(1))


def test_word_times_exclude_padding_inserted_by_finalize() -> None:
    """After a Finalize, words are timed in the client's audio, not the padded timeline."""
    engine = FakeEngine(slots=1, delay_frames=3)
    planner = StepPlanner(engine.info)
    listener = Listener()
    s = planner.open(listener)
    assert s is not None
    first = encode_text("ab")  # 3 frames: a, b, silence
    planner.push(s, split_frames(first)[0])
    planner.finalize(s, np.zeros(960, np.float32), end=False)  # half a frame of real silence
    drive(planner, engine)
    second = encode_text("cd")
    planner.push(s, split_frames(second)[0])
    planner.finalize(s, np.zeros(0, np.float32), end=True)
    drive(planner, engine)
    assert [w.text for w in listener.words] == ["ab", "cd"]
    cd = listener.words[1]
    client_offset = (first.size + 960) / 24_000  # where "cd" starts in the audio the client sent
    assert cd.start_s == pytest.approx(client_offset)
    assert cd.end_s == pytest.approx(client_offset + 0.16)


def test_configure_only_before_audio() -> None:
    planner = StepPlanner(info())
    s = planner.open(Listener())
    assert s is not None
    planner.configure(s, StreamOptions(language="en"))
    planner.push(s, frames(1))
    with pytest.raises(StreamClosedError):
        planner.configure(s, StreamOptions(language="fr"))


def test_push_rejects_wrong_shapes() -> None:
    planner = StepPlanner(info())
    s = planner.open(Listener())
    assert s is not None
    with pytest.raises(ValueError):
        planner.push(s, np.zeros((1, 100), np.float32))
    with pytest.raises(ValueError):
        planner.finalize(s, np.zeros(FRAME_SAMPLES, np.float32), end=False)


def test_a_raising_listener_does_not_cost_other_streams_their_words() -> None:
    class Broken(Listener):
        def on_events(self, events: object) -> None:
            raise RuntimeError("listener bug")

    engine = FakeEngine(slots=2, delay_frames=0)
    planner = StepPlanner(engine.info)
    good = Listener()
    bad_id = planner.open(Broken())
    good_id = planner.open(good)
    assert bad_id is not None and good_id is not None
    for i in (bad_id, good_id):
        planner.push(i, split_frames(encode_text("hi"))[0])
    drive(planner, engine)
    assert good.text == "hi"
    assert planner.used_slots == 1  # the broken stream was closed


def test_engine_returning_wrong_row_count_fails_those_streams() -> None:
    planner = StepPlanner(info(slots=2))
    listeners = [Listener(), Listener()]
    for listener in listeners:
        s = planner.open(listener)
        assert s is not None
        planner.push(s, frames(1))
    plan = planner.plan()
    assert plan is not None
    planner.complete(plan, StepOutput([[]]))
    assert all(isinstance(listener.error, RuntimeError) for listener in listeners)
    assert planner.used_slots == 0


def test_run_offline_handles_more_clips_than_slots() -> None:
    engine = RecordingEngine(slots=2, delay_frames=2)
    texts = ["one", "two three", "", "four", "five six seven"]
    words = run_offline(engine, [encode_text(t) for t in texts])
    assert [" ".join(w.text for w in ws) for ws in words] == texts
    assert max(len(r.slots) for r in engine.records) == 2


def test_run_offline_raises_when_the_engine_fails() -> None:
    from tests.fakes import FailingEngine

    engine = FailingEngine(lambda batch: True, slots=1)
    with pytest.raises(RuntimeError, match="engine failed"):
        run_offline(engine, [encode_text("x")])


# -- lead-in frames and delayed acknowledgements ------------------------------------------


def test_the_lead_in_is_the_streams_own_first_frames_off_its_clock() -> None:
    planner = StepPlanner(EngineInfo("test", max_batch=2, delay_frames=0, flush_frames=0, prefix_frames=3))
    a = planner.open(Listener(), StreamOptions(language="fr"))
    assert a is not None
    planner.configure(a, StreamOptions(language="en"))  # the lead-in is not audio: still allowed
    audio = np.full((2, FRAME_SAMPLES), 0.5, dtype=np.float32)
    planner.push(a, audio)
    assert planner.backlog(a) == 5
    plan = planner.plan()
    assert plan is not None
    assert plan.input.reset.tolist() == [True] and plan.input.options[0] == StreamOptions(language="en")
    assert not plan.input.frames.any(), "the lead-in is silence"
    planner.complete(plan, StepOutput([[]]))
    b = planner.open(Listener())  # a new stream's lead-in never adds rows for stream a
    assert b is not None
    planner.push(b, audio)
    sizes = []
    while (plan := planner.plan()) is not None:
        assert sorted(plan.owners) == sorted(set(plan.owners))
        sizes.append(len(plan))
        planner.complete(plan, StepOutput([[] for _ in range(len(plan))]))
    assert sizes == [2, 2, 2, 2, 1]  # a: 4 frames left; b: 3 lead-in + 2 audio, one row each


def test_word_times_exclude_the_lead_in() -> None:
    clips = [encode_text("ab cd"), encode_text("e")]
    plain_engine = RecordingEngine(slots=2, delay_frames=2)
    plain = run_offline(plain_engine, clips)
    prefixed_engine = RecordingEngine(slots=2, delay_frames=2, prefix_frames=4)
    prefixed = run_offline(prefixed_engine, clips)
    assert [w.text for w in plain[0]] == ["ab", "cd"]
    for got, want in zip(prefixed, plain, strict=True):
        assert [w.text for w in got] == [w.text for w in want]
        times = [t for w in got for t in (w.start_s, w.end_s)]
        assert times == pytest.approx([t for w in want for t in (w.start_s, w.end_s)])
    assert len(prefixed_engine.records) == len(plain_engine.records) + 4


def one_stream(flush: int) -> tuple[StepPlanner, Listener, int]:
    """A one-slot planner and its open stream."""
    planner = StepPlanner(info(slots=1, flush=flush))
    listener = Listener()
    s = planner.open(listener)
    assert s is not None
    return planner, listener, s


def test_an_end_of_stream_keeps_its_slot_until_the_ack_lands_in_a_later_step() -> None:
    planner, listener, s = one_stream(flush=1)
    planner.push(s, frames(1))
    planner.finalize(s, np.zeros(0, np.float32), end=True)
    while (plan := planner.plan()) is not None:
        planner.complete(plan, StepOutput([[] for _ in range(len(plan))]))  # no ack yet
    assert not listener.finished and planner.awaiting_acks()
    assert planner.used_slots == 1 and planner.open(Listener()) is None, "the slot stays taken"
    collect = planner.collect_plan()
    assert len(collect) == 0 and len(collect.input) == 0
    slot = 0
    planner.complete(collect, StepOutput([], late={slot: [WordEvent("last", 0.0, 0.08), FLUSHED]}))
    assert listener.events == ["word:last", "finished"]
    assert planner.used_slots == 0 and not planner.awaiting_acks()


def test_an_ack_splits_the_words_before_a_finalize_from_those_after() -> None:
    planner, listener, s = one_stream(flush=0)
    planner.push(s, frames(1))
    planner.finalize(s, np.zeros(0, np.float32), end=False)
    planner.push(s, frames(1))
    plans = [planner.plan() for _ in range(3)]
    assert [bool(p.input.flush[0]) for p in plans if p is not None] == [False, True, False]
    for plan in plans:
        assert plan is not None
        planner.complete(plan, StepOutput([[]]))
    assert listener.events == []
    late = [WordEvent("before", 0.0, 0.08), FLUSHED, WordEvent("after", 0.16, 0.24)]
    planner.complete(planner.collect_plan(), StepOutput([], late={0: late}))
    assert listener.events == ["word:before", "flushed", "word:after"]
    assert not listener.finished and planner.used_slots == 1


def test_late_results_of_a_stream_that_left_never_reach_the_slots_next_stream() -> None:
    planner = StepPlanner(info(slots=1, flush=0))
    old, new = Listener(), Listener()
    a = planner.open(old)
    assert a is not None
    planner.finalize(a, np.zeros(100, np.float32), end=True)
    plan = planner.plan()
    assert plan is not None
    planner.complete(plan, StepOutput([[]]))
    planner.close(a)  # the client left before its final words landed
    b = planner.open(new)
    assert b is not None and planner.slot_of(b) == 0
    planner.complete(planner.collect_plan(), StepOutput([], late={0: [WordEvent("old", 0, 0.08), FLUSHED]}))
    assert old.events == [] and new.events == []
    planner.push(b, frames(1))
    plan = planner.plan()
    assert plan is not None and plan.input.reset[0]
    planner.complete(plan, StepOutput([[]], late={}))
    planner.complete(planner.collect_plan(), StepOutput([], late={0: [WordEvent("new", 0, 0.08)]}))
    assert new.events == ["word:new"]


def test_unacknowledged_flushes_fail_their_streams_only() -> None:
    planner = StepPlanner(info(slots=2, flush=0))
    waiting, other = Listener(), Listener()
    w, o = planner.open(waiting), planner.open(other)
    assert w is not None and o is not None
    planner.finalize(w, np.zeros(0, np.float32), end=True)
    planner.push(o, frames(1))
    plan = planner.plan()
    assert plan is not None
    planner.complete(plan, StepOutput([[], []]))
    planner.fail_unacknowledged(RuntimeError("lost"))
    assert waiting.events == ["failed"] and other.events == []
    assert planner.used_slots == 1


def test_run_offline_waits_for_acks_that_land_after_the_last_frame() -> None:
    engine = LateAckEngine(land_at_once=True, slots=2, delay_frames=2)
    texts = ["one", "two three", "four"]
    words = run_offline(engine, [encode_text(t) for t in texts])
    assert [" ".join(w.text for w in ws) for ws in words] == texts
    assert any(not r.slots for r in engine.records), "the last words came in a collecting step"


def test_run_offline_fails_a_stream_whose_flush_is_never_acknowledged() -> None:
    with pytest.raises(RuntimeError, match="engine failed"):
        run_offline(AckDroppingEngine(slots=1), [encode_text("x")])


def test_pcm16_frames_reach_the_engine_as_the_floats_they_stand_for() -> None:
    """Streams queue PCM16 as int16 and the step converts its batch at once: the engine gets
    the same float32 frames as if each message had been decoded, beside float32 streams
    (Kyutai's protocol sends floats), through the lead-in and a flushed int16 tail."""
    planner = StepPlanner(EngineInfo("test", max_batch=3, delay_frames=1, flush_frames=1, prefix_frames=1))
    rng = np.random.default_rng(7)
    pcm = rng.integers(-32768, 32768, 3 * FRAME_SAMPLES + 100).astype("<i2")
    floats = pcm16_to_float32(pcm.tobytes())
    as_pcm, as_float, mixed = (planner.open(Listener()) for _ in range(3))
    assert as_pcm is not None and as_float is not None and mixed is not None
    whole = 3 * FRAME_SAMPLES
    planner.push(as_pcm, pcm16_view(pcm[:whole].tobytes()).reshape(3, FRAME_SAMPLES))
    planner.finalize(as_pcm, pcm[whole:], end=True)
    planner.push(as_float, floats[:whole].reshape(3, FRAME_SAMPLES))
    planner.finalize(as_float, floats[whole:], end=True)
    planner.push(mixed, pcm[:FRAME_SAMPLES].reshape(1, FRAME_SAMPLES))
    planner.push(mixed, floats[FRAME_SAMPLES:whole].reshape(2, FRAME_SAMPLES))
    planner.finalize(mixed, pcm[whole:], end=True)
    rows: dict[int, list[np.ndarray]] = {as_pcm: [], as_float: [], mixed: []}
    while (plan := planner.plan()) is not None:
        assert plan.input.frames.dtype == np.float32
        for row, owner in enumerate(plan.owners):
            rows[owner].append(plan.input.frames[row].copy())  # the array serves later steps
        planner.complete(plan, acked(plan))
    expected = np.zeros((6, FRAME_SAMPLES), np.float32)  # lead-in, 3 frames, tail, 1 padding
    expected[1:4] = floats[:whole].reshape(3, FRAME_SAMPLES)
    expected[4, :100] = floats[whole:]
    for got in rows.values():
        np.testing.assert_array_equal(np.stack(got), expected)


def test_a_steps_frames_array_is_reused_only_once_that_step_completed() -> None:
    """Plans reuse the frames array of a completed step (a fresh one each step costs page
    faults), never one still in flight."""
    planner = StepPlanner(info(slots=2))
    a = planner.open(Listener())
    assert a is not None
    planner.push(a, np.stack([frames(1, value=v)[0] for v in (0.1, 0.2, 0.3)]))
    first = planner.plan()
    second = planner.plan()  # the first is still in flight
    assert first is not None and second is not None
    assert not np.shares_memory(first.input.frames, second.input.frames)
    planner.complete(first, acked(first))
    third = planner.plan()
    assert third is not None
    assert np.shares_memory(third.input.frames, first.input.frames)
    assert not np.shares_memory(third.input.frames, second.input.frames)
    np.testing.assert_array_equal(second.input.frames, frames(1, value=0.2))
    np.testing.assert_array_equal(third.input.frames, frames(1, value=0.3))
