"""Kyutai's streaming STT (Mimi codec + delayed-streams LM) as a batched engine.

The design is Kyutai's own batched server: a fixed table of B slots stepped together, one
80 ms frame per step. Every step runs the full batch through moshi's streaming Mimi encoder
and `LMGen`; an execution mask keeps slots without a frame from advancing, and a reset mask
clears a slot's codec and KV-cache state when a new stream takes it, so no slot ever sees
another's state. Text tokens go to each slot's `SlotDecoder` for words and pauses, and each
slot's `ContextClock` restarts that slot's LM before its attention window fills (context.py).

Every stream starts with the engine's lead-in (`EngineInfo.prefix_frames`), which the planner
feeds as the new stream's first frames, rows of that stream alone and off its clock, so a
connection never adds model steps for the streams already running: at least one frame,
because `LMGen` replaces a new row's whole input with its initial tokens (its first frame
would go unheard), and the checkpoint's silence prefix where it is longer (stt-2.6b-en: 1 s).
A flush is acknowledged in the step of its last padding frame, once the delay's worth of
padding has brought every word out (as Kyutai's server echoes a Marker after the delay).

torch and moshi are imported when an engine is built, never when this package is listed.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SAMPLES, FRAME_SECONDS
from stt.engine.base import BaseEngine
from stt.engine.interface import FLUSHED, EngineInfo, SlotEvent, StepInput, StepOutput
from stt.engine.kyutai.checkpoint import (
    PAUSE_HEAD,
    CheckpointError,
    CheckpointFiles,
    SttTiming,
    end_of_turn_note,
)
from stt.engine.kyutai.context import ContextClock, ContextPolicy, Refresh
from stt.engine.kyutai.options import KyutaiOptions
from stt.engine.kyutai.words import SlotDecoder, TextIds, Tokenizer

if TYPE_CHECKING:
    import torch

log = logging.getLogger("stt.engine.kyutai.engine")

FLUSH_MARGIN_S = 0.5
"""Padding after the delay at a flush, as Kyutai's evaluation script pads: time for the
pieces of a long last word to come out one frame each."""


@dataclass
class KyutaiModel:
    """Loaded model parts, ready to stream."""

    mimi: Any
    """moshi.models.MimiModel"""
    lm: Any
    """moshi.models.LMModel"""
    tokenizer: Tokenizer
    ids: TextIds
    """The model's special text ids (boundary, padding) and the tokenizer's control ids."""
    timing: SttTiming
    device: torch.device


class SentencePieceTokenizer:
    """The checkpoint's SentencePiece model as `words.Tokenizer`: decodes word pieces only."""

    def __init__(self, processor: Any, ids: TextIds) -> None:
        self._sp = processor
        self._ids = ids

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._sp.decode([i for i in ids if self._ids.is_piece(i)]))

    def count(self, word: str) -> int:
        return len(self._sp.encode(word))


def text_ids(lm: Any, processor: Any) -> TextIds:
    """The special ids as the LM and its tokenizer declare them (not Kyutai's usual 0 and 3)."""
    control = {int(processor.bos_id()), int(processor.eos_id())}
    return TextIds(
        boundary=int(lm.end_of_text_padding_id),
        padding=int(lm.text_padding_token_id),
        vocab_size=int(processor.vocab_size()),
        control=frozenset(i for i in control if i >= 0),
    )


def text_lag(delays: Sequence[int]) -> int:
    """Steps by which `LMGen` returns each text token late: the largest stream delay minus
    the text stream's own (0 for the published checkpoints, whose `delays` are all 0)."""
    if not delays or min(delays) < 0:
        raise CheckpointError(f"config.json `delays` must be non-negative integers, got {list(delays)}")
    return max(delays) - delays[0]


def configure_cuda() -> None:
    """TF32 for float32 matmuls (Mimi runs in float32), as Kyutai's evaluation script sets;
    process-wide, so only called when an engine is built on CUDA."""
    import torch

    torch.set_float32_matmul_precision("high")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


def load_model(
    files: CheckpointFiles, device: str = KyutaiOptions.device, dtype: str = KyutaiOptions.dtype
) -> KyutaiModel:
    """Build Mimi, the LM and the tokenizer from checkpoint files with moshi's own loaders."""
    import sentencepiece
    import torch
    from moshi.models import loaders

    device = resolve_device(device)
    info = loaders.CheckpointInfo(
        moshi_weights=files.lm_weights,
        mimi_weights=files.mimi_weights,
        tokenizer=files.tokenizer,
        lm_config=_lm_kwargs(files.config),
        raw_config=files.config,
        mimi_config=files.mimi_config,
        model_type=str(files.config.get("model_type", "stt")),
        stt_config=dict(files.config.get("stt_config") or {}),
    )
    mimi = info.get_mimi(device=device)
    lm = info.get_moshi(device=device, dtype=resolve_dtype(dtype, device))
    processor = sentencepiece.SentencePieceProcessor(str(files.tokenizer))
    ids = text_ids(lm, processor)
    log.info("loaded kyutai checkpoint %s on %s", files.source, device)
    return KyutaiModel(
        mimi, lm, SentencePieceTokenizer(processor, ids), ids, files.timing, torch.device(device)
    )


def _lm_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """config.json minus the keys that name files or configure other parts (what moshi pops)."""
    skip = {
        "moshi_name",
        "mimi_name",
        "mimi_config_name",
        "tokenizer_name",
        "lora_name",
        "model_type",
        "lm_gen_config",
        "tts_config",
        "stt_config",
        "model_id",
    }
    return {k: v for k, v in config.items() if k not in skip}


class KyutaiEngine(BaseEngine):
    """B slots of Kyutai STT stepped together on one device.

    `steps` counts batched model steps, `slot_steps[s]` the frames slot s consumed and
    `last_tokens` holds the text token of every slot from the latest step (ungenerated ids
    where a slot was idle), so tests can check stepping and per-slot independence.
    """

    def __init__(
        self,
        model: KyutaiModel,
        *,
        slots: int,
        options: KyutaiOptions | None = None,
    ) -> None:
        from moshi.models.lm import LMGen

        self._model = model
        self._device = model.device
        on_cuda = self._device.type == "cuda"
        if on_cuda:
            configure_cuda()
        timing = model.timing
        delay = round(timing.delay_s / FRAME_SECONDS, 6)
        # Kyutai's server counts text from round(delay) frames on (6 for 0.5 s).
        self._delay_frames = round(delay)
        self._lag_frames = text_lag(list(model.lm.delays))
        # The lead-in: the checkpoint's silence prefix, and at least the one frame that LMGen's
        # first step replaces with its initial tokens (as Kyutai's server feeds a pad first).
        self._prefix_frames = max(1, math.ceil(round(timing.silence_prefix_s / FRAME_SECONDS, 6)))
        self._pause_heads = len(model.lm.extra_heads)
        options = options or KyutaiOptions()
        pause_threshold = options.pause_threshold
        self._pause_threshold = pause_threshold if self._pause_heads > PAUSE_HEAD else 0.0
        note = end_of_turn_note(self._pause_heads, pause_threshold)
        if pause_threshold > 0 and not self._pause_threshold:
            log.warning("kyutai: %s", note)
        else:
            log.info("kyutai: %s", note)
        self._info = EngineInfo(
            name="kyutai",
            max_batch=slots,
            delay_frames=self._delay_frames + self._lag_frames,
            flush_frames=flush_frames(timing.delay_s) + self._lag_frames,
            prefix_frames=self._prefix_frames,
            languages=(),
            pause_events=self._pause_threshold > 0,
        )
        self._cuda_graphs = options.cuda_graphs and on_cuda
        self._compile = options.compile and on_cuda
        self._gen = LMGen(model.lm, use_sampling=False, temp=0.0, temp_text=0.0, support_out_of_sync=True)
        self._mimi = model.mimi
        self._streaming = contextlib.ExitStack()
        self._streaming.enter_context(self._mimi.streaming(slots))
        self._streaming.enter_context(self._gen.streaming(slots))
        has_head = self._pause_heads > PAUSE_HEAD
        self._policy = ContextPolicy.for_model(
            lm_context(model.lm),
            self._delay_frames + self._lag_frames,
            limit_s=options.context_s,
            pause_threshold=(self._pause_threshold or 0.5) if has_head else 0.0,
        )
        self._io = StepBuffers(slots, self._device, with_pauses=has_head)
        self._decoders = [self._new_decoder() for _ in range(slots)]
        self._clocks = [self._new_clock() for _ in range(slots)]
        self.context_refreshes = 0
        """Slot LM restarts so far (`stt_context_refreshes_total`)."""
        self.refresh_log: list[tuple[int, int, Refresh]] = []
        """(slot, the stream's step, why) of the latest refreshes, for tests; bounded."""
        self.steps = 0
        self.slot_steps = np.zeros(slots, dtype=np.int64)
        self.last_tokens = np.zeros(slots, dtype=np.int64)

    @property
    def info(self) -> EngineInfo:
        return self._info

    def _new_decoder(self) -> SlotDecoder:
        return SlotDecoder(
            self._model.tokenizer,
            self._model.ids,
            delay_s=self._model.timing.delay_s,
            lag_frames=self._lag_frames,
            prefix_frames=self._prefix_frames,
            pause_threshold=self._pause_threshold,
        )

    def _new_clock(self) -> ContextClock | None:
        return ContextClock(self._policy) if self._policy is not None else None

    def counters(self) -> dict[str, int]:
        """Monotonic counts for the server's metrics."""
        return {"context_refreshes": self.context_refreshes}

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        import torch
        from moshi.utils.compile import no_compile, no_cuda_graph

        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if not self._compile:
                stack.enter_context(no_compile())
            if not self._cuda_graphs:
                stack.enter_context(no_cuda_graph())
            yield

    def step(self, batch: StepInput) -> StepOutput:
        slots = batch.slots
        with self._context():
            if batch.reset.any():
                self._reset(slots[batch.reset])
            self._io.stage(slots, batch.frames)
            tokens, pauses = self._model_step()
        events: list[list[SlotEvent]] = []
        token_list: list[int] = tokens.tolist()  # Python scalars: cheaper than numpy indexing per row
        pause_list: list[float] | None = None if pauses is None else pauses.tolist()
        refresh: list[int] = []
        is_piece = self._model.ids.is_piece
        for slot, flush in zip(slots.tolist(), batch.flush.tolist(), strict=True):
            decoder = self._decoders[slot]
            token = token_list[slot]
            pause = None if pause_list is None else pause_list[slot]
            out: list[SlotEvent] = []
            out.extend(decoder.push(token, pause))
            flushed = decoder.flush() if flush else None
            clock = self._clocks[slot]
            if clock is not None:
                why = clock.observe(piece=is_piece(token), pending=decoder.pending, pause_probability=pause)
                if why is not None:
                    out.extend(decoder.flush())  # a forced refresh sends the word in progress first
                    decoder.restart()
                    refresh.append(slot)
                    self._note_refresh(slot, decoder.steps, why)
            if flushed is not None:
                out.extend(flushed)
                out.append(FLUSHED)
            events.append(out)
        if refresh:
            self._refresh(np.array(refresh, dtype=np.int64))
        return StepOutput(events)

    def _note_refresh(self, slot: int, step: int, why: Refresh) -> None:
        self.context_refreshes += 1
        self.refresh_log.append((slot, step, why))
        if len(self.refresh_log) > 10_000:
            del self.refresh_log[:5_000]
        log.debug("kyutai: slot %d context refresh at step %d (%s)", slot, step, why.value)

    def _refresh(self, slots: npt.NDArray[np.int64]) -> None:
        """Restart the slots' LM (KV cache, positions); their codec state goes on."""
        with self._context():
            self._gen.reset_streaming(self._io.mask_of(slots))
        for slot in slots.tolist():
            clock = self._clocks[slot]
            if clock is not None:
                clock.restart()

    def _reset(self, slots: npt.NDArray[np.int64]) -> None:
        """Clear the slots' codec and LM state (their lead-in comes as their next frames)."""
        mask = self._io.mask_of(slots)
        self._mimi.reset_streaming(mask)
        self._gen.reset_streaming(mask)
        for slot in slots.tolist():
            self._decoders[slot] = self._new_decoder()
            self._clocks[slot] = self._new_clock()

    def _model_step(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32] | None]:
        """One batched Mimi encode + LM step on the staged frames; slots not staged keep
        their state. Reads back the text tokens and pause probabilities in one copy."""
        self._mimi.set_exec_mask(self._io.active)
        self._gen.set_exec_mask(self._io.active)
        codes = self._mimi.encode(self._io.audio)
        out = self._gen.step_with_extra_heads(codes)
        assert out is not None, "LMGen runs with support_out_of_sync, so every step has output"
        text, heads = out
        tokens, pauses = self._io.download(
            text[:, 0, 0], heads[PAUSE_HEAD][:, 0, 0] if self._io.with_pauses else None
        )
        self.steps += 1
        self.slot_steps += self._io.active_host
        self.last_tokens = tokens
        return tokens, pauses

    def close(self) -> None:
        """Drop the streaming state (KV caches, codec buffers) so the model can be reused or freed."""
        self._streaming.close()
        self._decoders = []
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def lm_context(lm: Any) -> int | None:
    """The LM's attention window in frames (config.json `context`); None when unbounded."""
    layers = getattr(lm.transformer, "layers", None)
    context = getattr(layers[0].self_attn, "context", None) if layers else None
    return int(context) if context else None


def flush_frames(delay_s: float) -> int:
    """Padding frames a flush needs: the delay plus `FLUSH_MARGIN_S`, as Kyutai's evaluation
    pads (13 for stt-1b-en_fr, 38 for stt-2.6b-en)."""
    return math.ceil(round((delay_s + FLUSH_MARGIN_S) / FRAME_SECONDS, 6))


class StepBuffers:
    """The host<->device traffic of a step, once each way.

    Frames and the execution mask are staged in host buffers (pinned on CUDA) and uploaded
    with one asynchronous copy each; the text tokens and the pause probabilities come back
    packed in one float32 tensor through one copy into a pinned buffer, so a step
    synchronises with the device once. Token ids are far below 2**24, exact in float32.
    """

    def __init__(self, slots: int, device: torch.device, *, with_pauses: bool) -> None:
        import torch

        pinned = device.type == "cuda"

        def host(*shape: int, dtype: torch.dtype) -> torch.Tensor:
            t = torch.zeros(*shape, dtype=dtype)
            return t.pin_memory() if pinned else t

        self.with_pauses = with_pauses
        self._slots = slots
        self._host_audio = host(slots, FRAME_SAMPLES, dtype=torch.float32)
        self._host_mask = host(slots, dtype=torch.bool)
        self._host_out = host(2 if with_pauses else 1, slots, dtype=torch.float32)
        self.audio = torch.zeros(slots, 1, FRAME_SAMPLES, device=device)
        self.active = torch.zeros(slots, dtype=torch.bool, device=device)
        self.active_host = np.zeros(slots, dtype=np.bool_)
        self.downloads = 0
        """Device-to-host copies so far (one per model step)."""

    def stage(self, slots: npt.NDArray[np.int64], frames: npt.NDArray[np.float32]) -> None:
        """Put `frames` into `slots` (zeros elsewhere) and mark exactly those slots active."""
        audio = self._host_audio.numpy()
        audio.fill(0.0)
        audio[slots] = frames
        self.active_host = np.zeros(self._slots, dtype=np.bool_)
        self.active_host[slots] = True
        self._host_mask.numpy()[:] = self.active_host
        # Safe to refill next step: each step ends by reading its results back, after these copies.
        self.audio.copy_(self._host_audio[:, None, :], non_blocking=True)
        self.active.copy_(self._host_mask, non_blocking=True)

    def mask_of(self, slots: npt.NDArray[np.int64]) -> torch.Tensor:
        """A device mask of `slots` (for resets, which are rare: a plain upload)."""
        import torch

        mask = torch.zeros(self._slots, dtype=torch.bool)
        mask[torch.from_numpy(slots)] = True
        return mask.to(self.active.device)

    def download(
        self, tokens: torch.Tensor, pauses: torch.Tensor | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32] | None]:
        import torch

        packed = torch.stack([tokens.float(), pauses.float()]) if pauses is not None else tokens.float()[None]
        self._host_out.copy_(packed)  # blocking: the one synchronisation of the step
        self.downloads += 1
        out = self._host_out.numpy()
        return out[0].astype(np.int64), (out[1].copy() if pauses is not None else None)


def build(model: str | None, options: KyutaiOptions, *, slots: int | None) -> KyutaiEngine:
    """Locate, load and wrap a checkpoint (the registry's builder)."""
    from stt.engine.kyutai.checkpoint import locate

    loaded = load_model(locate(model), options.device, options.dtype)
    default_slots = 64 if loaded.device.type == "cuda" else 4
    return KyutaiEngine(loaded, slots=slots or default_slots, options=options)
