"""The Kyutai engine on a tiny random checkpoint of the real architecture, on CPU.

Random weights say nothing about accuracy; these tests check what must hold for any
weights: loading through the real code, one model step per frame per active slot, slots
that never see each other's state (alone vs. beside others, after reuse, across idle steps),
the delay, flush and silence prefix, and the pause head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stt.constants import FRAME_SECONDS
from stt.engine.interface import Engine, EngineInfo, PauseEvent, WordEvent
from stt.engine.kyutai.words import KYUTAI_IDS
from tests.engine.kyutai.helpers import (
    KYUTAI_LIBS,
    SKIP_REASON,
    Driver,
    PlannedStreams,
    build,
    clip,
    reference_loop,
)

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
    # 0.48 s delay: text from frame 6; flush pads ceil((0.48 + 0.5) * 12.5) = 13 frames.
    assert (info.name, info.max_batch, info.delay_frames, info.flush_frames) == ("kyutai", 3, 6, 13)
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
    ids = KYUTAI_IDS
    assert any(t in (ids.boundary, ids.padding) for t in reference[0])
    assert any(ids.is_piece(t) for t in reference[0])


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
    first = engine._decoders[0].first_position
    pieces = [t for i, t in enumerate(driver.tokens[0]) if i + 1 >= first and engine._model.ids.is_piece(t)]
    text = engine._model.tokenizer.decode(pieces)
    assert "".join(w.text for w in words) == text.replace(" ", ""), "a piece was lost or repeated"


def test_flush_keeps_the_stream_going(tiny_checkpoint: Path, reference: dict[int, list[int]]) -> None:
    """Finalize mid-stream emits the word in progress but does not reset the slot."""
    driver = Driver(build(tiny_checkpoint, slots=SLOTS))
    frames = clip(0)
    for i, frame in enumerate(frames):
        driver.step([(0, frame, i == 0, i % 10 == 9)])
    assert driver.tokens[0] == reference[0]


def test_the_silence_prefix_is_frames_of_the_new_stream_alone(tiny_prefixed_checkpoint: Path) -> None:
    """A connection adds rows of its own stream, never model steps for the others: the
    streams already running advance one frame per step while a new one runs its lead-in."""
    engine = build(tiny_prefixed_checkpoint, slots=1)
    prefix = engine.info.prefix_frames
    assert prefix == 2
    a, b = clip(0), clip(1)
    assert PlannedStreams(engine).run(a) == reference_loop(tiny_prefixed_checkpoint, a, lead_in=prefix)[0]
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


def test_the_first_frame_is_heard(tiny_checkpoint: Path) -> None:
    """LMGen replaces a new row's whole first input with its initial tokens, so a stream
    without lead-in never has its first frame reach the LM. With the one-frame lead-in the
    LM's second step gets the codes of the stream's first audio frame, and every later step
    the codes of that step's frame: what Kyutai's loop gets after one frame of silence."""
    import torch

    from stt.engine.kyutai.checkpoint import locate
    from stt.engine.kyutai.engine import KyutaiEngine, load_model

    model = load_model(locate(str(tiny_checkpoint)), "cpu")
    lm_audio: list[torch.Tensor] = []
    codec_out: list[torch.Tensor] = []
    forward_text, encode = model.lm.forward_text, model.mimi.encode

    def spy_forward_text(sequence: torch.Tensor, *args: object, **kwargs: object) -> object:
        lm_audio.append(sequence[0, 1:, 0].clone())
        return forward_text(sequence, *args, **kwargs)

    def spy_encode(audio: torch.Tensor) -> torch.Tensor:
        codes = encode(audio)
        codec_out.append(codes[0, :, 0].clone())
        return codes

    model.lm.forward_text, model.mimi.encode = spy_forward_text, spy_encode
    engine = KyutaiEngine(model, slots=1)
    assert engine.info.prefix_frames == 1
    frames = clip(2)
    tokens = PlannedStreams(engine).run(frames)
    lead = engine.info.prefix_frames
    assert len(lm_audio) == len(codec_out) == len(frames) + lead
    assert torch.equal(lm_audio[lead], codec_out[lead]), "the first audio frame never reached the LM"
    assert all(torch.equal(lm_audio[k], codec_out[k]) for k in range(lead, len(frames) + lead))
    assert tokens == reference_loop(tiny_checkpoint, frames, lead_in=1)[0]


def test_flush_is_acknowledged_in_the_flush_rows_step_with_the_lead_in_off_the_clock(
    tiny_prefixed_checkpoint: Path,
) -> None:
    engine = build(tiny_prefixed_checkpoint, slots=1, kyutai_pause_threshold=0.0)
    streams = PlannedStreams(engine)
    frames = clip(2)
    tokens = streams.run(frames, end=True)
    listener = streams.listeners[1]
    assert listener.finished and not streams.planner.awaiting_acks()
    assert listener.words, "the tiny model should produce words for this clip"
    duration = len(frames) * FRAME_SECONDS
    assert all(0 <= w.start_s <= w.end_s <= duration + 1e-6 for w in listener.words)
    # the same words as the engine's own tokens, counted after the lead-in and the delay
    first = engine.info.prefix_frames + engine.info.delay_frames - 1
    ids = engine._model.ids
    pieces = [t for i, t in enumerate(tokens, start=1) if i >= first and ids.is_piece(t)]
    assert "".join(w.text for w in listener.words) == engine._model.tokenizer.decode(pieces).replace(" ", "")


def outlives_the_old_flush(
    tokens: list[int], is_piece: Callable[[int], bool], end: int, info: EngineInfo
) -> bool:
    """Whether the word in progress at the end of the clip (step `end`, steps counted from 1)
    is still being written past the old flush of delay + 1 frames, and closes, with nothing
    after it, before the current flush is acknowledged (step `end + flush_frames`)."""
    old_ack, ack = end + info.delay_frames + 1, end + info.flush_frames
    run = [is_piece(tokens[step - 1]) for step in range(old_ack, ack + 1)]
    length = run.index(False) if False in run else len(run)
    return 2 <= length < len(run) and not any(run[length:])


def test_a_long_last_word_is_not_cut_by_the_flush(tmp_path: Path) -> None:
    """A clip whose last word the model is still writing past the old flush of delay + 1
    frames (a talkative tiny model: boundary and padding less likely). Through the scheduler
    (`Scheduler.transcribe`: planner, lead-in, flush padding, acknowledgement) the client
    gets every word of this clip that Kyutai's loop writes given all the silence it wants,
    in full: with the old flush its last pieces came after the ack.

    Random weights give CPU-dependent tokens (float rounding differs by kernel), so the clip
    is the first of a range of seeds whose tokens here have that shape."""
    import asyncio

    from stt.engine.kyutai.testing import write_checkpoint
    from stt.engine.kyutai.words import SlotDecoder
    from stt.scheduler import Scheduler

    checkpoint = write_checkpoint(tmp_path / "talkative", boundary_gain=1.5)
    engine = build(checkpoint, slots=1, kyutai_pause_threshold=0.0)
    info, model = engine.info, engine._model
    is_piece = model.ids.is_piece
    lead = info.prefix_frames
    for seed in range(20, 80):
        audio = clip(seed, 24)
        end = lead + len(audio)  # steps counted from 1
        silence = np.zeros((30, audio.shape[1]), dtype=np.float32)
        tokens = reference_loop(checkpoint, np.concatenate([audio, silence]), lead_in=lead)[0]
        if outlives_the_old_flush(tokens, is_piece, end, info):
            break
    else:
        pytest.fail("no clip of seeds 20-79 has a last word that outlives the old flush")

    # Kyutai's loop given 30 frames of silence wrote the clip's last word before the ack step
    # (end + flush_frames) and nothing after it by then: the client must get what it wrote by then.
    reference = SlotDecoder(model.tokenizer, model.ids, model.timing.delay_s, prefix_frames=lead)
    ack = end + info.flush_frames
    written = [e for token in tokens[:ack] for e in reference.push(token) if isinstance(e, WordEvent)]
    duration = len(audio) * FRAME_SECONDS

    def client_time(slot_s: float) -> float:  # the planner takes the lead-in and padding off
        return round(min(duration, max(0.0, slot_s - lead * FRAME_SECONDS)), 6)

    expected = [(w.text, client_time(w.start_s), client_time(w.end_s)) for w in written]
    assert expected

    async def transcribe() -> list[WordEvent]:
        scheduler = Scheduler(engine)
        await scheduler.start(warmup=False)
        try:
            return await scheduler.transcribe(audio.reshape(-1))
        finally:
            await scheduler.stop()

    got = [(w.text, round(w.start_s, 6), round(w.end_s, 6)) for w in asyncio.run(transcribe())]
    assert got == expected


def test_word_times_follow_the_documented_convention(tiny_checkpoint: Path) -> None:
    """Through the planner (lead-in off the clock): a word starts at its first piece's stamp,
    (client frame index) * 0.08 - delay_s with the checkpoint's unrounded delay (0.48 s)."""
    engine = build(tiny_checkpoint, slots=1, kyutai_pause_threshold=0.0)
    streams = PlannedStreams(engine)
    frames = clip(4)
    tokens = streams.run(frames, end=True)
    words = streams.listeners[1].words
    lead, ids = engine.info.prefix_frames, engine._model.ids
    # where a run of pieces starts (the first counted step is lead-in + delay - 1)
    counted = [(step, ids.is_piece(t)) for step, t in enumerate(tokens, start=1) if step >= lead + 5]
    runs = [
        step for (step, piece), (_, before) in zip(counted[1:], counted, strict=False) if piece and not before
    ]
    assert words and runs
    expected = {round(max(0.0, (step - lead) * FRAME_SECONDS - 0.48), 6) for step in runs}
    assert expected <= {round(w.start_s, 6) for w in words}


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
    """stt-1b-en_fr: 0.5 s -> text from frame 6 on (as Kyutai's server), flush of the delay
    + 0.5 s as Kyutai's evaluation pads (13 frames, was 8: a long last word could be cut),
    one frame of lead-in; stt-2.6b-en: 2.5 s (38 flush frames), its 1 s silence prefix as
    the lead-in (13 frames)."""
    from dataclasses import replace

    from stt.engine.kyutai.checkpoint import SttTiming
    from stt.engine.kyutai.engine import KyutaiEngine

    model = build(tiny_checkpoint, slots=1)
    model.close()
    for timing, expected in [(SttTiming(0.5, 0.0), (6, 13, 1)), (SttTiming(2.5, 1.0), (31, 38, 13))]:
        engine = KyutaiEngine(replace(model._model, timing=timing), slots=1)
        assert (engine.info.delay_frames, engine.info.flush_frames, engine.info.prefix_frames) == expected
        engine.close()


def test_tokens_match_kyutai_reference_loop(tiny_checkpoint: Path) -> None:
    """The masked, batched step gives what Kyutai's own script (stt_from_file_pytorch.py) gets
    with plain batch-1 streaming: Mimi encode, then LMGen step, frame by frame."""
    frames = clip(2)
    engine_tokens = Driver(build(tiny_checkpoint, slots=1)).alone(0, frames)[0]
    assert engine_tokens == reference_loop(tiny_checkpoint, frames)[0]


# -- end-of-turn heads --------------------------------------------------------------------


def test_pauses_come_from_head_2_class_0_as_kyutai_reads_them(tiny_checkpoint: Path) -> None:
    frames = np.concatenate([clip(0), clip(1)])
    events = Driver(build(tiny_checkpoint, slots=1, kyutai_pause_threshold=0.2)).alone(0, frames)[1]
    head2 = reference_loop(tiny_checkpoint, frames)[1]
    pauses = [e for e in events if isinstance(e, PauseEvent)]
    assert pauses
    assert all(any(abs(p.probability - h) < 1e-5 for h in head2) for p in pauses)


def test_a_checkpoint_without_the_end_of_turn_head_sends_no_pauses_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two extra heads: there is no head 2, so no pause may be read from another head."""
    from stt.engine.kyutai.checkpoint import probe
    from stt.engine.kyutai.testing import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "two-heads", pause_heads=2)
    with caplog.at_level("WARNING", logger="stt.engine.kyutai.engine"):
        engine = build(checkpoint, slots=1, kyutai_pause_threshold=0.01)
    assert engine.info.pause_events is False
    assert "kyutai/stt-1b-en_fr-candle" in caplog.text and "no Pause events" in caplog.text
    events = Driver(engine).alone(0, np.concatenate([clip(0), clip(1)]))[1]
    assert not any(isinstance(e, PauseEvent) for e in events)
    ok, detail = probe(str(checkpoint), 0.5)
    assert ok and "end of turn: none" in detail and "stt-1b-en_fr-candle" in detail


# -- the model's own special ids ---------------------------------------------------------


def test_special_text_ids_are_read_from_the_model(tmp_path: Path) -> None:
    from stt.engine.kyutai.testing import tiny_lm_config, write_checkpoint

    checkpoint = write_checkpoint(
        tmp_path / "pad5", lm_config=tiny_lm_config() | {"existing_text_padding_id": 5}
    )
    ids = build(checkpoint, slots=1)._model.ids
    assert (ids.boundary, ids.padding, ids.control) == (0, 5, frozenset({1, 2}))
    assert ids.is_piece(3) and not ids.is_piece(5) and not ids.is_piece(2)


# -- non-zero delays ---------------------------------------------------------------------


def test_non_zero_delays_keep_times_and_the_last_piece(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """delays [0, 1, ...]: LMGen returns every text token one step late (an ungenerated id
    first). The words must be those of the tokens without the lag, at the same times."""
    from stt.engine.kyutai.testing import write_checkpoint
    from stt.engine.kyutai.words import SlotDecoder

    checkpoint = write_checkpoint(tmp_path / "delayed", delays=[0, 1, 1, 1, 1])
    engine = build(checkpoint, slots=1)
    plain = build(tiny_checkpoint, slots=1).info
    assert (engine.info.flush_frames, engine.info.delay_frames) == (
        plain.flush_frames + 1,
        plain.delay_frames + 1,
    )
    frames = clip(3)
    # One more frame (silence) than the clip, so the lagged last token comes out.
    padded = np.concatenate([frames, np.zeros((1, frames.shape[1]), dtype=np.float32)])
    tokens, _ = reference_loop(checkpoint, padded)
    assert tokens[0] == -2 and all(t >= 0 for t in tokens[1:])
    model = engine._model
    # the same decoder as the engine's but for the lag: its lead-in too, or a piece in the first
    # frame after the blind ones (there on some CPUs: the random LM's tokens follow the float
    # rounding of the matrix kernels) would count here and not in the engine
    lead = engine.info.prefix_frames
    unlagged = SlotDecoder(model.tokenizer, model.ids, model.timing.delay_s, prefix_frames=lead)
    expected: list[object] = []
    for token in tokens[1:]:
        expected += unlagged.push(token)
    expected += unlagged.flush()
    got = Driver(engine).alone(0, padded, flush_last=True)[1]
    words = [w for w in expected if isinstance(w, WordEvent)]
    assert words
    assert [w for w in got if isinstance(w, WordEvent)] == words


# -- per-step device traffic -------------------------------------------------------------


def test_a_step_reads_back_once_and_never_syncs_elsewhere(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA every `.cpu()`, `.item()` or `.tolist()` of a device tensor waits for the GPU:
    a step reads its tokens and pause probabilities back through one packed copy."""
    import torch

    engine = build(tiny_checkpoint, slots=2, kyutai_pause_threshold=0.2)
    Driver(engine).step([(0, clip(0)[0], True, False)])  # resets happen outside the steady state

    def refuse(name: str) -> object:
        def call(self: torch.Tensor, *args: object, **kwargs: object) -> object:
            raise AssertionError(f"Tensor.{name}() in a step: a device sync")

        return call

    for name in ("cpu", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse(name))
    before = engine._io.downloads
    driver = Driver(engine)
    driver.tokens[0], driver.events[0] = [], []
    for frame in clip(1)[:5]:
        driver.step([(0, frame, False, False)])
    assert engine._io.downloads - before == 5
