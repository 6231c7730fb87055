"""Kyutai's streaming STT (Mimi codec + delayed-streams LM) as a batched engine.

The design is Kyutai's own batched server: a fixed table of B slots stepped together, one
80 ms frame per step. Every step runs the full batch through moshi's streaming Mimi encoder
and `LMGen`; an execution mask keeps slots without a frame from advancing, and a reset mask
clears a slot's codec and KV-cache state when a new stream takes it, so no slot ever sees
another's state. Text tokens go to each slot's `SlotDecoder` for words and pauses.

A checkpoint's silence prefix (stt-2.6b-en: 1 s) is the engine's lead-in
(`EngineInfo.prefix_frames`): the planner feeds it as the new stream's first frames, rows of
that stream alone, so a connection never adds model steps for the streams already running.
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
from stt.engine.kyutai.checkpoint import CheckpointFiles, SttTiming
from stt.engine.kyutai.options import KyutaiOptions
from stt.engine.kyutai.words import PADDING, SlotDecoder

if TYPE_CHECKING:
    import torch

log = logging.getLogger("stt.engine.kyutai.engine")

PAUSE_HEAD = 2
"""Which extra head predicts the end of a turn; Kyutai's reference (stt_from_file_pytorch.py
--vad) reads head 2, class 0."""


@dataclass
class KyutaiModel:
    """Loaded model parts, ready to stream."""

    mimi: Any
    """moshi.models.MimiModel"""
    lm: Any
    """moshi.models.LMModel"""
    detokenize: Any
    """Callable[[Sequence[int]], str]"""
    timing: SttTiming
    device: torch.device


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
    tokenizer = sentencepiece.SentencePieceProcessor(str(files.tokenizer))
    vocab = int(tokenizer.vocab_size())

    def detokenize(ids: Sequence[int]) -> str:
        return str(tokenizer.decode([i for i in ids if PADDING < i < vocab]))

    log.info("loaded kyutai checkpoint %s on %s", files.source, device)
    return KyutaiModel(mimi, lm, detokenize, files.timing, torch.device(device))


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
        import torch
        from moshi.models.lm import LMGen

        self._model = model
        self._device = model.device
        timing = model.timing
        delay = round(timing.delay_s / FRAME_SECONDS, 6)
        # Kyutai's server counts text from round(delay) frames on (6 for 0.5 s) and its
        # reference script pads ceil(delay) frames of silence at the end (7 for 0.5 s).
        self._delay_frames = round(delay)
        self._prefix_frames = math.ceil(round(timing.silence_prefix_s / FRAME_SECONDS, 6))
        self._pause_heads = len(model.lm.extra_heads)
        options = options or KyutaiOptions()
        self._pause_threshold = options.pause_threshold if self._pause_heads else 0.0
        self._info = EngineInfo(
            name="kyutai",
            max_batch=slots,
            delay_frames=self._delay_frames,
            # One more than the delay: the word in progress ends at the first padding after it.
            flush_frames=math.ceil(delay) + 1,
            prefix_frames=self._prefix_frames,
            languages=(),
            pause_events=self._pause_threshold > 0,
        )
        on_cuda = self._device.type == "cuda"
        self._cuda_graphs = options.cuda_graphs and on_cuda
        self._compile = options.compile and on_cuda
        self._gen = LMGen(model.lm, use_sampling=False, temp=0.0, temp_text=0.0, support_out_of_sync=True)
        self._mimi = model.mimi
        self._streaming = contextlib.ExitStack()
        self._streaming.enter_context(self._mimi.streaming(slots))
        self._streaming.enter_context(self._gen.streaming(slots))
        self._audio = torch.zeros(slots, 1, FRAME_SAMPLES, device=self._device)
        # Staging buffer for the step's frames, pinned on CUDA: one async upload per step.
        host = torch.zeros(slots, FRAME_SAMPLES)
        self._host_audio = host.pin_memory() if on_cuda else host
        self._decoders = [self._new_decoder() for _ in range(slots)]
        self.steps = 0
        self.slot_steps = np.zeros(slots, dtype=np.int64)
        self.last_tokens = np.zeros(slots, dtype=np.int64)

    @property
    def info(self) -> EngineInfo:
        return self._info

    def _new_decoder(self) -> SlotDecoder:
        return SlotDecoder(
            self._model.detokenize,
            delay_frames=self._delay_frames,
            prefix_frames=self._prefix_frames,
            pause_threshold=self._pause_threshold,
        )

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
        n_slots = self._info.max_batch
        slots = batch.slots
        with self._context():
            if batch.reset.any():
                self._reset(slots[batch.reset])
            active = np.zeros(n_slots, dtype=np.bool_)
            active[slots] = True
            staged = self._host_audio.numpy()
            staged.fill(0.0)
            staged[slots] = batch.frames
            # Safe to refill next step: this step ends by reading its tokens back, after the copy.
            self._audio.copy_(self._host_audio[:, None, :], non_blocking=True)
            tokens, pauses = self._model_step(active)
        events: list[list[SlotEvent]] = []
        token_list: list[int] = tokens.tolist()  # Python scalars: cheaper than numpy indexing per row
        pause_list: list[float] | None = None if pauses is None else pauses.tolist()
        for slot, flush in zip(slots.tolist(), batch.flush.tolist(), strict=True):
            decoder = self._decoders[slot]
            out: list[SlotEvent] = []
            out.extend(decoder.push(token_list[slot], None if pause_list is None else pause_list[slot]))
            if flush:
                out.extend(decoder.flush())
                out.append(FLUSHED)
            events.append(out)
        return StepOutput(events)

    def _reset(self, slots: npt.NDArray[np.int64]) -> None:
        """Clear the slots' codec and LM state (their lead-in comes as their next frames)."""
        import torch

        mask = torch.zeros(self._info.max_batch, dtype=torch.bool)
        mask[torch.from_numpy(slots)] = True
        mask = mask.to(self._device)
        self._mimi.reset_streaming(mask)
        self._gen.reset_streaming(mask)
        for slot in slots.tolist():
            self._decoders[slot] = self._new_decoder()

    def _model_step(self, active: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], Any]:
        """One batched Mimi encode + LM step; slots not `active` keep their state."""
        import torch

        mask = torch.from_numpy(active).to(self._device)
        self._mimi.set_exec_mask(mask)
        self._gen.set_exec_mask(mask)
        codes = self._mimi.encode(self._audio)
        out = self._gen.step_with_extra_heads(codes)
        assert out is not None, "LMGen runs with support_out_of_sync, so every step has output"
        text, heads = out
        tokens = text[:, 0, 0].cpu().numpy()
        pauses = None
        if self._pause_threshold > 0:
            pauses = heads[min(PAUSE_HEAD, len(heads) - 1)][:, 0, 0].float().cpu().numpy()
        self.steps += 1
        self.slot_steps += active
        self.last_tokens = tokens
        return tokens, pauses

    def close(self) -> None:
        """Drop the streaming state (KV caches, codec buffers) so the model can be reused or freed."""
        self._streaming.close()
        self._decoders = []
        if self._device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def build(model: str | None, options: KyutaiOptions, *, slots: int | None) -> KyutaiEngine:
    """Locate, load and wrap a checkpoint (the registry's builder)."""
    from stt.engine.kyutai.checkpoint import locate

    loaded = load_model(locate(model), options.device, options.dtype)
    default_slots = 64 if loaded.device.type == "cuda" else 4
    return KyutaiEngine(loaded, slots=slots or default_slots, options=options)
