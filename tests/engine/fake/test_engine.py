import numpy as np
import pytest

from stt.audio import split_frames
from stt.constants import FRAME_SAMPLES
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.engine.interface import FLUSHED, Engine, PauseEvent, StepInput, StreamOptions, WordEvent


def batch(slots: list[int], frames: np.ndarray, reset: bool = False, flush: bool = False) -> StepInput:
    n = len(slots)
    return StepInput(
        np.array(slots, dtype=np.int64),
        frames.astype(np.float32),
        np.full(n, reset),
        np.full(n, flush),
        [StreamOptions(language="fr")] * n if reset else [],
    )


def test_is_an_engine() -> None:
    assert isinstance(FakeEngine(), Engine)


def test_text_comes_out_after_the_configured_delay() -> None:
    delay = 4
    engine = FakeEngine(slots=1, delay_frames=delay)
    frames, _ = split_frames(encode_text("hey"))  # h e y silence
    emitted_at = None
    for i, frame in enumerate(frames):
        out = engine.step(batch([0], frame[None], reset=i == 0))
        if out.events[0]:
            emitted_at = i
    silence = np.zeros((1, FRAME_SAMPLES), np.float32)
    for i in range(len(frames), len(frames) + delay + 1):
        out = engine.step(batch([0], silence))
        if out.events[0]:
            emitted_at = i
            assert [w.text for w in out.events[0]] == ["hey"]
    assert emitted_at == 3 + delay  # the word ends at frame 3 (the silence)


def test_flush_emits_pending_and_unfinished_words() -> None:
    engine = FakeEngine(slots=1, delay_frames=10)
    frames, _ = split_frames(encode_text("ab cd", gap_frames=1))
    for i, frame in enumerate(frames[:-1]):  # "ab", gap, "cd" without its closing silence
        assert engine.step(batch([0], frame[None], reset=i == 0)).events[0] == []
    out = engine.step(batch([0], frames[-1][None], flush=True))
    *words, ack = out.events[0]
    assert ack is FLUSHED, "the fake acknowledges a flush in the flush row's own step"
    assert [w.text for w in words if isinstance(w, WordEvent)] == ["ab", "cd"]
    ab, cd = words
    assert isinstance(ab, WordEvent) and isinstance(cd, WordEvent)
    assert (ab.start_s, ab.end_s) == pytest.approx((0.0, 0.16))
    assert (cd.start_s, cd.end_s) == pytest.approx((0.24, 0.40))


def test_slots_are_independent_and_reset_clears_state() -> None:
    engine = FakeEngine(slots=3, delay_frames=0)
    a = split_frames(encode_text("aaa", gap_frames=0))[0]
    b = split_frames(encode_text("bbb", gap_frames=0))[0]
    for i in range(3):
        engine.step(batch([0, 2], np.stack([a[i], b[i]]), reset=i == 0))
    assert engine.slot_options(2) == StreamOptions(language="fr")
    # a new stream in slot 0 must not inherit the unfinished "aaa"
    silence = np.zeros((1, FRAME_SAMPLES), np.float32)
    out = engine.step(batch([0], silence, reset=True))
    assert out.events == [[]]
    out = engine.step(batch([2], silence))
    assert [w.text for w in out.events[0]] == ["bbb"]


def test_step_cost_is_slept() -> None:
    import time

    engine = FakeEngine(slots=2, step_cost_s=0.05)
    started = time.perf_counter()
    engine.step(batch([0], np.zeros((1, FRAME_SAMPLES))))
    assert time.perf_counter() - started >= 0.05


def test_warmup_runs_full_batch_steps() -> None:
    engine = FakeEngine(slots=5)
    engine.warmup()
    assert engine.steps == 2 and engine.rows == 10


def test_transcribe_batch_uses_the_streaming_path() -> None:
    engine = FakeEngine(slots=2, delay_frames=3)
    clips = [encode_text("alpha beta"), encode_text("gamma"), encode_text("delta epsilon zeta")]
    assert engine.transcribe_batch(clips) == ["alpha beta", "gamma", "delta epsilon zeta"]
    assert engine.steps > 0


def test_predicts_a_pause_after_silence_following_a_word() -> None:
    engine = FakeEngine(slots=1, delay_frames=2, pause_frames=3)
    assert engine.info.pause_events
    audio = np.concatenate([encode_text("turn", gap_frames=5), encode_text("next", gap_frames=1)])
    frames, _ = split_frames(audio)
    events = []
    for i, frame in enumerate(frames):
        events += engine.step(batch([0], frame[None], reset=i == 0, flush=i == len(frames) - 1)).events[0]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["WordEvent", "PauseEvent", "WordEvent", "FlushAck"]  # no pause after the short gap
    pause = events[1]
    assert pause.time_s == pytest.approx((4 + 3) * 0.08) and pause.probability == 1.0  # type: ignore[union-attr]


def test_no_pauses_unless_asked() -> None:
    engine = FakeEngine(slots=1, delay_frames=0)
    assert not engine.info.pause_events
    frames, _ = split_frames(encode_text("quiet", gap_frames=20))
    events = [
        e for i, f in enumerate(frames) for e in engine.step(batch([0], f[None], reset=i == 0)).events[0]
    ]
    assert [type(e).__name__ for e in events] == ["WordEvent"]


class _ReferenceSlot:
    """The fake engine's rules for one slot, row by row, as plainly as they can be written."""

    def __init__(self) -> None:
        self.frame = 0
        self.word = ""
        self.start = 0
        self.silent: int | None = None
        self.pending: list[tuple[int, object]] = []

    def end_word(self, delay: int) -> None:
        if self.word:
            word = WordEvent(self.word, self.start * 0.08, self.frame * 0.08)
            self.pending.append((self.frame + 1 + delay, word))
            self.word, self.silent = "", 0

    def row(self, symbol: str | None, flush: bool, delay: int, pause_frames: int) -> list[object]:
        if symbol is None:
            self.end_word(delay)
            if pause_frames > 0 and self.silent is not None:
                self.silent += 1
                if self.silent >= pause_frames:
                    self.pending.append((self.frame + 1 + delay, PauseEvent((self.frame + 1) * 0.08, 1.0)))
                    self.silent = None
        else:
            if not self.word:
                self.start = self.frame
            self.word += symbol
            self.silent = None
        self.frame += 1
        if flush:
            self.end_word(delay)
        out = []
        while self.pending and (flush or self.pending[0][0] <= self.frame):
            out.append(self.pending.pop(0)[1])
        return [*out, FLUSHED] if flush else out


@pytest.mark.parametrize(("delay", "pause_frames", "seed"), [(0, 0, 1), (2, 1, 2), (6, 3, 3), (1, 2, 4)])
def test_steps_follow_the_rules_row_by_row(delay: int, pause_frames: int, seed: int) -> None:
    """Random batches (any subset of slots in any order, resets, flushes, long words, pauses)
    give each slot exactly the events of the rules applied to its own frames, one by one."""
    rng = np.random.default_rng(seed)
    slots = 12
    engine = FakeEngine(slots=slots, delay_frames=delay, pause_frames=pause_frames)
    reference = [_ReferenceSlot() for _ in range(slots)]
    letter = {c: encode_text(c, gap_frames=0) for c in "abcxyz09'"}
    silence = np.zeros(FRAME_SAMPLES, np.float32)
    started = [False] * slots
    seen = 0
    for _ in range(400):
        rows = rng.permutation(slots)[: rng.integers(0, slots + 1)].tolist()
        symbols = [None if rng.random() < 0.3 else str(rng.choice(list(letter))) for _ in rows]
        if rng.random() < 0.05:
            symbols = ["a"] * len(rows)  # every row a letter: words run long
        resets = [not started[s] or bool(rng.random() < 0.03) for s in rows]
        flushes = [bool(rng.random() < 0.05) for _ in rows]
        frames = np.array([silence if c is None else letter[c] for c in symbols], np.float32)
        out = engine.step(
            StepInput(
                np.array(rows, dtype=np.int64),
                frames.reshape(len(rows), FRAME_SAMPLES),
                np.array(resets, dtype=np.bool_),
                np.array(flushes, dtype=np.bool_),
                [StreamOptions(language=str(s)) if r else None for s, r in zip(rows, resets, strict=True)],
            )
        )
        for row, slot in enumerate(rows):
            if resets[row]:
                started[slot], reference[slot] = True, _ReferenceSlot()
            expected = reference[slot].row(symbols[row], flushes[row], delay, pause_frames)
            assert out.events[row] == expected, f"slot {slot}"
            seen += len(expected)
    assert seen > 200
