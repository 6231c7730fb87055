"""Context refresh: each slot's LM restarts before its attention window fills, at a pause
when one comes, invisibly to the client (context.py, the engine's refresh)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from stt.engine.interface import WordEvent
from stt.engine.kyutai.context import ContextClock, ContextPolicy, Refresh
from tests.engine.kyutai.helpers import KYUTAI_LIBS, SKIP_REASON, Driver, build, clip, reference_loop

POLICY = ContextPolicy(horizon=10, earliest=5, quiet_frames=3, pause_threshold=0.5)


def run(clock: ContextClock, steps: list[tuple[bool, bool, float | None]]) -> list[Refresh | None]:
    out = []
    for piece, pending, pause in steps:
        out.append(clock.observe(piece=piece, pending=pending, pause_probability=pause))
    return out


def test_policy_of_the_published_models() -> None:
    """stt-1b-en_fr: 750-frame window, 0.5 s delay; stt-2.6b-en: 375 frames, 2.5 s."""
    assert ContextPolicy.for_model(750, 6) == ContextPolicy(750, 375, 12, 0.0)
    assert ContextPolicy.for_model(375, 31, pause_threshold=0.5) == ContextPolicy(375, 187, 32, 0.5)
    assert ContextPolicy.for_model(750, 6, limit_s=20.0).horizon == 250  # the setting lowers it
    assert ContextPolicy.for_model(None, 6) is None  # an unbounded window needs no refresh


def test_a_quiet_run_after_half_the_window_refreshes() -> None:
    clock = ContextClock(POLICY)
    quiet = (False, False, None)
    assert run(clock, [quiet] * 4) == [None] * 4  # too early, though quiet
    assert run(clock, [quiet]) == [Refresh.QUIET]
    clock.restart()
    word = (True, True, None)
    assert run(clock, [quiet, word, word, quiet, quiet, quiet]) == [None] * 5 + [Refresh.QUIET]


def test_a_predicted_pause_refreshes_but_never_inside_a_word() -> None:
    clock = ContextClock(POLICY)
    steps = [(True, True, 0.0)] * 5 + [(False, True, 0.9), (False, False, 0.9)]
    assert run(clock, steps) == [None] * 6 + [Refresh.PAUSE]


def test_no_pause_before_the_horizon_forces_a_refresh() -> None:
    clock = ContextClock(POLICY)
    talking = (True, True, 0.0)
    assert run(clock, [talking] * 10) == [None] * 9 + [Refresh.FORCED]
    clock.restart()
    assert clock.lm_steps == 0


engine_tests = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)


@engine_tests
def test_a_refreshed_slot_matches_kyutai_loop_reset_there_and_disturbs_no_other(
    tiny_short_context_checkpoint: Path,
) -> None:
    """The tiny LM's window is 40 frames. A refresh restarts that slot's LM only: its tokens
    are Kyutai's loop with `LMGen` reset at the same steps, the other slot's are unchanged."""
    a, b = clip(10, 150), clip(11, 150)
    alone = build(tiny_short_context_checkpoint, slots=1)
    tokens = Driver(alone).alone(0, a)[0]
    steps = [step for _, step, _ in alone.refresh_log]
    assert len(steps) >= 3 and all(20 <= s2 - s1 <= 40 for s1, s2 in zip([0, *steps], steps, strict=False))
    assert tokens == reference_loop(tiny_short_context_checkpoint, a, reset_after=steps)[0]

    b_alone = Driver(build(tiny_short_context_checkpoint, slots=2)).alone(1, b)[0]
    engine = build(tiny_short_context_checkpoint, slots=2)
    driver = Driver(engine)
    for i in range(len(a)):
        driver.step([(0, a[i], i == 0, False), (1, b[i], i == 0, False)])
    assert {slot for slot, _, _ in engine.refresh_log} == {0, 1}
    assert driver.tokens[1] == b_alone


@engine_tests
def test_the_metric_counts_refreshes(tiny_short_context_checkpoint: Path) -> None:
    engine = build(tiny_short_context_checkpoint, slots=1)
    assert engine.counters() == {"context_refreshes": 0}
    Driver(engine).alone(0, clip(12, 100))
    assert engine.counters()["context_refreshes"] == len(engine.refresh_log) >= 2


@engine_tests
@pytest.mark.slow
def test_a_ten_minute_stream_keeps_its_clock_and_loses_no_word_at_a_refresh(
    tiny_short_context_checkpoint: Path,
) -> None:
    """7500 frames through a 40-frame window (about 90 s on one core): the LM never holds
    more than its window, refreshes happen at the policy's points, word times run on, and
    every word piece the model emits is sent exactly once across the refreshes."""
    engine = build(tiny_short_context_checkpoint, slots=1)
    policy = engine._policy
    assert policy is not None and policy.horizon == 40
    frames = np.concatenate([clip(100 + i, 300) for i in range(25)])
    assert len(frames) == 7500
    driver = Driver(engine)
    lm_state = engine._gen._streaming_state
    longest = 0
    for i, frame in enumerate(frames):
        driver.step([(0, frame, i == 0, i == len(frames) - 1)])
        longest = max(longest, int(lm_state.offsets[0]))
    assert longest <= policy.horizon, "the LM's position passed its window"

    tokens, events = driver.tokens[0], driver.events[0]
    refreshes = engine.refresh_log
    assert len(refreshes) >= len(frames) // policy.horizon
    ids, previous = engine._model.ids, 0
    for _, step, why in refreshes:
        assert policy.earliest <= step - previous <= policy.horizon
        if why is Refresh.FORCED:
            assert step - previous == policy.horizon
        elif why is Refresh.QUIET:
            assert not any(ids.is_piece(t) for t in tokens[step - policy.quiet_frames : step])
        previous = step
    assert {why for _, _, why in refreshes} >= {Refresh.FORCED, Refresh.QUIET}

    words = [e for e in events if isinstance(e, WordEvent)]
    duration = len(frames) * 0.08
    assert all(0 <= w.start_s <= w.end_s <= duration for w in words)
    assert all(w1.start_s <= w2.start_s for w1, w2 in itertools.pairwise(words)), "time went back"
    assert words[-1].end_s > duration - 20, "the clock ran on to the end of the stream"
    # Pieces the decoder counts: from the lead-in + delay - 1 on (the decoder expects the
    # planner's lead-in frame), except the 5 blind positions after each refresh (the new
    # LM's first text is about audio it has not heard).
    first = engine.info.prefix_frames + engine.info.delay_frames - 1
    blind = {s + k for _, s, _ in refreshes for k in range(1, engine.info.delay_frames)}
    counted = [t for i, t in enumerate(tokens, start=1) if i >= first and i not in blind and ids.is_piece(t)]
    text = engine._model.tokenizer.decode(counted)
    assert "".join(w.text for w in words) == text.replace(" ", ""), "a piece was lost or repeated"
    # The clock: a run of counted pieces (ended by a non-piece, a blind stretch or a refresh)
    # that spells a word starts a word at its first step's stamp, step * 0.08 - delay_s,
    # however many refreshes came before.
    delay_s, refreshed = engine._model.timing.delay_s, {s for _, s, _ in refreshes}
    runs: list[list[tuple[int, int]]] = []
    before = False
    for i, t in enumerate(tokens, start=1):
        piece = i >= first and i not in blind and ids.is_piece(t)
        if piece:
            if not before:
                runs.append([])
            runs[-1].append((i, t))
        before = piece and i not in refreshed
    starts = [
        round(max(0.0, run[0][0] * 0.08 - delay_s), 6)
        for run in runs
        if engine._model.tokenizer.decode([t for _, t in run]).split()
    ]
    assert len(starts) > 100
    assert set(starts) <= {round(w.start_s, 6) for w in words}, "a word's time is off the clock"
