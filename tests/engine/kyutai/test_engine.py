"""The Kyutai engine on a tiny random checkpoint of the real architecture, on CPU.

Random weights say nothing about accuracy; these tests check what must hold for any
weights: loading through the real code, one model step per frame per active slot, slots
that never see each other's state (alone vs. beside others, after reuse, across idle steps),
the delay, flush and silence prefix, and the pause head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stt.constants import FRAME_SAMPLES, FRAME_SECONDS
from stt.engine.interface import Engine, PauseEvent, WordEvent
from stt.engine.kyutai.words import PADDING
from stt.planner import StepPlanner
from tests.engine.conftest import KYUTAI_LIBS, SKIP_REASON
from tests.engine.kyutai.helpers import Driver, Frames, build, clip
from tests.fakes import Listener

pytestmark = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)
SLOTS = 4


@pytest.fixture(scope="module")
def reference(tiny_checkpoint: Path) -> dict[int, list[int]]:
    """Tokens of clips 0..3, each run alone in slot 0 of a fresh 4-slot engine.

    Comparisons use engines of the same size: the batch is always the whole slot table, and
    a different table size may change float rounding (not state) in the matrix products."""
    out = {}
    for seed in range(4):
        out[seed] = Driver(build(tiny_checkpoint, slots=SLOTS)).alone(0, clip(seed))[0]
    return out


def test_loads_the_published_layout_through_the_registry(tiny_checkpoint: Path) -> None:
    engine = build(tiny_checkpoint, slots=3)
    assert isinstance(engine, Engine)
    info = engine.info
    assert (info.name, info.max_batch, info.delay_frames, info.flush_frames) == ("kyutai", 3, 6, 7)
    assert info.pause_events is True


def test_one_model_step_per_frame_per_active_slot(tiny_checkpoint: Path) -> None:
    engine = build(tiny_checkpoint, slots=4)
    driver = Driver(engine)
    a, b = clip(0), clip(1)
    driver.step([(0, a[0], True, False), (1, b[0], True, False)])
    driver.step([(1, b[1], False, False)])
    driver.step([(2, a[0], True, False), (0, a[1], False, False)])
    assert engine.steps == 3
    assert engine.slot_steps.tolist() == [2, 2, 1, 0]
    assert engine.last_tokens[3] < 0, "an idle slot's token is the ungenerated id"


def test_reference_tokens_depend_on_the_audio(reference: dict[int, list[int]]) -> None:
    """Guards the other tests: equal tokens would prove nothing if every clip gave the same."""
    assert all(len(set(tokens)) >= 3 for tokens in reference.values())
    assert len({tuple(t) for t in reference.values()}) == len(reference)
    assert any(PADDING >= t >= 0 for t in reference[0]) and any(t > PADDING for t in reference[0])


def test_a_stream_gets_the_same_tokens_beside_others_and_across_idle_steps(
    tiny_checkpoint: Path, reference: dict[int, list[int]]
) -> None:
    driver = Driver(build(tiny_checkpoint, slots=SLOTS))
    clips = {seed: clip(seed) for seed in range(3)}
    pos = {0: 0, 1: 0, 2: 0}
    slot_of = {0: 2, 1: 0, 2: 3}
    step = 0
    while any(pos[s] < len(clips[s]) for s in pos):
        rows = []
        for seed, at in pos.items():
            starts_late = seed == 2 and step < 5
            idles = seed == 1 and step % 3 == 1  # this stream skips every third step
            if at < len(clips[seed]) and not starts_late and not idles:
                rows.append((slot_of[seed], clips[seed][at], at == 0, False))
                pos[seed] += 1
        if rows:
            driver.step(rows)
        step += 1
    for seed, slot in slot_of.items():
        assert driver.tokens[slot] == reference[seed], f"stream {seed} in slot {slot}"


def test_a_reused_slot_starts_clean(tiny_checkpoint: Path, reference: dict[int, list[int]]) -> None:
    engine = build(tiny_checkpoint, slots=SLOTS)
    driver = Driver(engine)
    driver.alone(1, clip(3)[:20])  # leaves codec, KV cache and a word in progress behind
    assert driver.alone(1, clip(0))[0] == reference[0]
    assert driver.alone(1, clip(2))[0] == reference[2]


def test_warmup_leaves_no_state_behind(tiny_checkpoint: Path, reference: dict[int, list[int]]) -> None:
    engine = build(tiny_checkpoint, slots=SLOTS)
    engine.warmup()
    assert Driver(engine).alone(1, clip(1))[0] == reference[1]


def test_words_wait_for_the_delay_and_flush_emits_every_piece(tiny_checkpoint: Path) -> None:
    engine = build(tiny_checkpoint, slots=1)
    driver = Driver(engine)
    frames = clip(0)
    per_step = [driver.step([(0, f, i == 0, i == len(frames) - 1)])[0] for i, f in enumerate(frames)]
    delay = engine.info.delay_frames
    assert all(events == [] for events in per_step[: delay - 1])
    words = [e for e in driver.events[0] if isinstance(e, WordEvent)]
    assert words, "the tiny model should produce words for this clip"
    duration = len(frames) * 0.08
    assert all(0 <= w.start_s <= w.end_s <= duration for w in words)
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)
    pieces = [t for i, t in enumerate(driver.tokens[0]) if i + 1 >= delay and t > PADDING]
    text = engine._model.detokenize(pieces)
    assert "".join(w.text for w in words) == text.replace(" ", ""), "a piece was lost or repeated"


def test_flush_keeps_the_stream_going(tiny_checkpoint: Path, reference: dict[int, list[int]]) -> None:
    """Finalize mid-stream emits the word in progress but does not reset the slot."""
    driver = Driver(build(tiny_checkpoint, slots=SLOTS))
    frames = clip(0)
    for i, frame in enumerate(frames):
        driver.step([(0, frame, i == 0, i % 10 == 9)])
    assert driver.tokens[0] == reference[0]


class PlannedStreams:
    """Streams fed one frame per step through the real planner, tokens recorded per stream."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.planner = StepPlanner(engine.info)
        self.tokens: dict[int, list[int]] = {}
        self.listeners: dict[int, Listener] = {}

    def open(self) -> int:
        listener = Listener()
        stream = self.planner.open(listener)
        assert stream is not None
        self.tokens[stream], self.listeners[stream] = [], listener
        return stream

    def step(self) -> None:
        plan = self.planner.plan()
        assert plan is not None
        out = self.engine.step(plan.input)
        for stream, slot in zip(plan.owners, plan.input.slots.tolist(), strict=True):
            self.tokens[stream].append(int(self.engine.last_tokens[slot]))
        self.planner.complete(plan, out)

    def run(self, frames: Frames) -> list[int]:
        """One whole stream, alone."""
        stream = self.open()
        self.planner.push(stream, frames)
        while self.planner.has_work():
            self.step()
        return self.tokens[stream]


def reference_loop(checkpoint: Path, frames: Frames) -> list[int]:
    """Kyutai's own script (stt_from_file_pytorch.py): plain batch-1 streaming, Mimi encode
    then LMGen step, frame by frame."""
    import torch
    from moshi.models.lm import LMGen

    from stt.engine.kyutai.checkpoint import locate
    from stt.engine.kyutai.engine import load_model

    model = load_model(locate(str(checkpoint)), "cpu")
    gen = LMGen(model.lm, use_sampling=False, temp=0.0, temp_text=0.0)
    expected = []
    with model.mimi.streaming(1), gen.streaming(1), torch.no_grad():
        for frame in frames:
            codes = model.mimi.encode(torch.from_numpy(frame)[None, None, :])
            tokens = gen.step(codes)
            assert tokens is not None
            expected.append(int(tokens[0, 0, 0]))
    return expected


def test_the_silence_prefix_is_frames_of_the_new_stream_alone(tiny_prefixed_checkpoint: Path) -> None:
    """A connection adds rows of its own stream, never model steps for the others: the
    streams already running advance one frame per step while a new one runs its lead-in."""
    engine = build(tiny_prefixed_checkpoint, slots=1)
    prefix = engine.info.prefix_frames
    assert prefix == 2
    a, b = clip(0), clip(1)
    lead_in = np.zeros((prefix, FRAME_SAMPLES), dtype=np.float32)
    assert PlannedStreams(engine).run(a) == reference_loop(
        tiny_prefixed_checkpoint, np.concatenate([lead_in, a])
    )
    alone = {0: PlannedStreams(build(tiny_prefixed_checkpoint, slots=2)).run(a)}
    alone[1] = PlannedStreams(build(tiny_prefixed_checkpoint, slots=2)).run(b[:20])

    engine = build(tiny_prefixed_checkpoint, slots=2)
    streams = PlannedStreams(engine)
    first = streams.open()
    second = None
    for i in range(len(a)):
        streams.planner.push(first, a[i : i + 1])  # real time: one frame per step
        if i == 5:
            second = streams.open()
            streams.planner.push(second, b[:20])  # arrives with a backlog: lead-in, then audio
        before = engine.slot_steps.copy()
        streams.step()
        assert (engine.slot_steps - before).max() == 1, "every slot advanced at most one frame"
    assert second is not None
    while streams.planner.has_work():
        streams.step()
    assert engine.steps == streams.planner.steps, "no model step beyond the planned ones"
    assert engine.slot_steps.tolist() == [len(a) + prefix, 20 + prefix]
    assert streams.tokens[first] == alone[0]
    assert streams.tokens[second] == alone[1]


def test_flush_is_acknowledged_in_the_flush_rows_step_with_the_lead_in_off_the_clock(
    tiny_prefixed_checkpoint: Path,
) -> None:
    engine = build(tiny_prefixed_checkpoint, slots=1, kyutai_pause_threshold=0.0)
    streams = PlannedStreams(engine)
    stream = streams.open()
    frames = clip(2)
    streams.planner.push(stream, frames)
    streams.planner.finalize(stream, np.zeros(0, dtype=np.float32), end=True)
    while streams.planner.has_work():
        streams.step()
    listener = streams.listeners[stream]
    assert listener.finished and not streams.planner.awaiting_acks()
    assert listener.words, "the tiny model should produce words for this clip"
    duration = len(frames) * FRAME_SECONDS
    assert all(0 <= w.start_s <= w.end_s <= duration + 1e-6 for w in listener.words)
    # the same words as the engine's own times minus the lead-in (the planner took it off)
    delay = engine.info.delay_frames
    tokens = streams.tokens[stream]
    pieces = [t for i, t in enumerate(tokens) if i + 1 >= delay + engine.info.prefix_frames and t > PADDING]
    assert "".join(w.text for w in listener.words) == engine._model.detokenize(pieces).replace(" ", "")


def test_pause_head_reports_end_of_turn_after_words(tiny_checkpoint: Path) -> None:
    frames = np.concatenate([clip(0), clip(1)])
    low = Driver(build(tiny_checkpoint, slots=1, kyutai_pause_threshold=0.2)).alone(0, frames)[1]
    pauses = [e for e in low if isinstance(e, PauseEvent)]
    assert pauses and all(0.2 <= p.probability <= 1 for p in pauses)
    first_word = next(i for i, e in enumerate(low) if isinstance(e, WordEvent))
    assert all(isinstance(e, WordEvent) for e in low[:first_word])
    off = build(tiny_checkpoint, slots=1, kyutai_pause_threshold=0.0)
    assert off.info.pause_events is False
    assert not any(isinstance(e, PauseEvent) for e in Driver(off).alone(0, frames)[1])


def test_close_frees_the_model_for_a_new_table(
    tiny_checkpoint: Path, reference: dict[int, list[int]]
) -> None:
    from stt.engine.kyutai.engine import KyutaiEngine

    engine = build(tiny_checkpoint, slots=2)
    Driver(engine).alone(0, clip(3)[:5])
    engine.close()
    again = KyutaiEngine(engine._model, slots=SLOTS)
    assert Driver(again).alone(0, clip(0))[0] == reference[0]


def test_published_delays_map_to_frames_as_kyutai_counts_them(tiny_checkpoint: Path) -> None:
    """stt-1b-en_fr: 0.5 s -> text from frame 6 on (as Kyutai's server), 7 + 1 flush frames;
    stt-2.6b-en: 2.5 s and a 1 s silence prefix (13 frames, as Kyutai's reference script)."""
    from dataclasses import replace

    from stt.engine.kyutai.checkpoint import SttTiming
    from stt.engine.kyutai.engine import KyutaiEngine

    model = build(tiny_checkpoint, slots=1)
    model.close()
    for timing, expected in [(SttTiming(0.5, 0.0), (6, 8, 0)), (SttTiming(2.5, 1.0), (31, 33, 13))]:
        engine = KyutaiEngine(replace(model._model, timing=timing), slots=1)
        assert (engine.info.delay_frames, engine.info.flush_frames, engine.info.prefix_frames) == expected
        engine.close()


def test_tokens_match_kyutai_reference_loop(tiny_checkpoint: Path) -> None:
    """The masked, batched step gives what Kyutai's own script gets with plain batch-1
    streaming."""
    frames = clip(2)
    engine_tokens = Driver(build(tiny_checkpoint, slots=1)).alone(0, frames)[0]
    assert engine_tokens == reference_loop(tiny_checkpoint, frames)
