"""Random-weight Kyutai STT checkpoints: the real architecture, written in the published layout.

No weights can be downloaded on CI or development machines, so tests build a tiny model of
the same architecture, save it exactly as Kyutai publishes checkpoints (config.json,
model.safetensors, the Mimi weights, a SentencePiece tokenizer trained on the fly) and load
it back through the real loading code; the GPU benchmark builds the full-size stt-1b-en_fr
architecture (same compute as the real model). Run `python -m stt.engine.kyutai.testing DIR`
to write a tiny checkpoint for `stt serve --engine kyutai --model DIR`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stt.constants import FRAME_SAMPLES
from stt.engine.kyutai.checkpoint import CONFIG_NAME, LM_NAME, MIMI_NAME, SttTiming

if TYPE_CHECKING:
    from stt.engine.kyutai.engine import KyutaiModel
    from stt.engine.kyutai.words import TextIds

TINY_TOKENIZER_NAME = "tokenizer_tiny_64.model"
TINY_MIMI_CONFIG_NAME = "mimi_config.json"
_CORPUS = (
    "hello world the quick brown fox jumps over a lazy dog bonjour le monde merci beaucoup "
    "streaming speech to text one two three four five six seven eight nine ten zero jazz quiz "
    "xylophone vivid kayak wizard why yes"
)
"""Text the tiny tokenizer is trained on: enough distinct letters and words for 64 pieces."""


def stt_1b_lm_config() -> dict[str, Any]:
    """kyutai/stt-1b-en_fr's LM architecture (as its candle config publishes it): 16 layers of
    2048 wide, 32 Mimi codebooks in, 8000 text tokens out, 4 pause heads."""
    return {
        "dim": 2048,
        "text_card": 8000,
        "existing_text_padding_id": 3,
        "n_q": 32,
        "dep_q": 0,
        "card": 2048,
        "num_heads": 16,
        "num_layers": 16,
        "hidden_scale": 4.125,
        "causal": True,
        "context": 750,
        "max_period": 100000,
        "gating": "silu",
        "norm": "rms_norm_f32",
        "positional_embedding": "rope",
        "delays": [0] * 33,
        "extra_heads_num_heads": 4,
        "extra_heads_dim": 6,
    }


def stt_2b6_lm_config() -> dict[str, Any]:
    """kyutai/stt-2.6b-en's LM architecture (its candle config in delayed-streams-modeling):
    48 layers of 2048 wide with 32 heads, 4000 text tokens, a 375-frame context."""
    return stt_1b_lm_config() | {
        "text_card": 4000,
        "num_heads": 32,
        "num_layers": 48,
        "context": 375,
        "extra_heads_num_heads": 0,
    }


def tiny_lm_config(text_card: int = 64) -> dict[str, Any]:
    """The same architecture shrunk to a few thousand weights: fast enough for CPU tests."""
    return stt_1b_lm_config() | {
        "dim": 32,
        "text_card": text_card,
        "n_q": 4,
        "card": 64,
        "num_heads": 2,
        "num_layers": 2,
        "hidden_scale": 2.0,
        "context": 200,
        "max_period": 10000,
        "delays": [0] * 5,
    }


def tiny_mimi_config() -> dict[str, Any]:
    """Mimi with its real strides (1920 samples per 80 ms frame) but a few channels."""
    from moshi.models import loaders

    seanet = dict(loaders._seanet_kwargs, dimension=16, n_filters=2)
    return {
        "sample_rate": 24000,
        "channels": 1,
        "frame_rate": 12.5,
        "seanet": seanet,
        "quantizer": dict(
            loaders._quantizer_kwargs, dimension=8, n_q=4, bins=64, input_dimension=16, output_dimension=16
        ),
        "transformer": dict(
            loaders._transformer_kwargs,
            d_model=16,
            num_heads=2,
            num_layers=1,
            dim_feedforward=32,
            input_dimension=16,
            output_dimensions=[16],
        ),
    }


def train_tokenizer(path: Path, vocab_size: int = 64) -> None:
    """A SentencePiece model with Kyutai's special ids: 0 unknown/word boundary, 3 padding."""
    import sentencepiece as spm

    words = _CORPUS.split()
    sentences = [" ".join(words[(i * 7 + j) % len(words)] for j in range(8)) for i in range(200)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(path.with_suffix("")),
        vocab_size=vocab_size,
        model_type="unigram",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )


def write_checkpoint(
    root: Path,
    *,
    lm_config: dict[str, Any] | None = None,
    mimi_config: dict[str, Any] | None = None,
    delay_s: float = 0.48,
    pause_heads: int | None = None,
    delays: list[int] | None = None,
    silence_prefix_s: float = 0.0,
    seed: int = 0,
    boundary_gain: float = 4.0,
    audio_gain: float = 3.0,
) -> Path:
    """Write a random-weight checkpoint in the published layout and return its directory.

    `pause_heads` and `delays` override the LM's extra heads and stream delays (the
    checkpoint variants the engine must handle).

    Random weights need three nudges to behave like a model that listens: Mimi's codebooks
    start empty (every frame would get code 0), so they are fitted to its own latents; the
    LM's audio embeddings are scaled by `audio_gain` so the text depends on the audio more
    than on the previous token; and the rows of the boundary and padding tokens in the text
    head are scaled by `boundary_gain` so that, as in real output, words alternate with gaps.
    """
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_file

    lm_config = lm_config or tiny_lm_config()
    if pause_heads is not None:
        lm_config = lm_config | {"extra_heads_num_heads": pause_heads}
    if delays is not None:
        lm_config = lm_config | {"delays": delays}
    mimi_config = mimi_config or tiny_mimi_config()
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    n_codebooks = lm_config["n_q"] - lm_config["dep_q"]
    mimi = loaders.get_mimi(None, mimi_config, num_codebooks=n_codebooks)
    lm = loaders.get_moshi_lm(None, lm_config, dtype=torch.float32)
    with torch.no_grad():
        _fit_codebooks(mimi)
        for embedding in lm.emb:
            cast(torch.Tensor, embedding.weight).mul_(audio_gain)
        lm.text_linear.weight[[0, 3]] *= boundary_gain
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(root / MIMI_NAME))
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(root / LM_NAME))
    train_tokenizer(root / TINY_TOKENIZER_NAME, vocab_size=min(64, lm_config["text_card"]))
    (root / TINY_MIMI_CONFIG_NAME).write_text(json.dumps(mimi_config, indent=1))
    config = lm_config | {
        "model_type": "stt",
        "mimi_name": MIMI_NAME,
        "tokenizer_name": TINY_TOKENIZER_NAME,
        "mimi_config_name": TINY_MIMI_CONFIG_NAME,
        "lm_gen_config": {"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
        "stt_config": {"audio_delay_seconds": delay_s, "audio_silence_prefix_seconds": silence_prefix_s},
    }
    (root / CONFIG_NAME).write_text(json.dumps(config, indent=1))
    return root


def _fit_codebooks(mimi: Any) -> None:
    """Fill Mimi's empty codebooks by k-means on its own latents of random audio, as moshi
    initialises them in training (the quantizer's training-mode forward does it)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    loudness = torch.rand(8, 1, 25, generator=generator).repeat_interleave(FRAME_SAMPLES, -1)
    audio = torch.randn(8, 1, 25 * FRAME_SAMPLES, generator=generator) * loudness * 0.3
    latent = mimi._encode_to_unquantized_latent(audio)
    mimi.quantizer.train()
    mimi.quantizer(latent, mimi.frame_rate)
    mimi.quantizer.eval()


def random_model(
    lm_config: dict[str, Any] | None = None,
    mimi_config: dict[str, Any] | None = None,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    seed: int = 0,
) -> KyutaiModel:
    """A random-weight model in memory, for benchmarks: by default the full stt-1b-en_fr
    architecture with moshi's published Mimi. Its detokenizer names token ids ("t42") since
    there is no trained tokenizer; word bookkeeping costs the same."""
    import torch
    from moshi.models import loaders

    from stt.engine.kyutai.engine import KyutaiModel, resolve_device, resolve_dtype

    lm_config = lm_config or stt_1b_lm_config()
    device = resolve_device(device)
    torch.manual_seed(seed)
    n_codebooks = lm_config["n_q"] - lm_config["dep_q"]
    mimi = loaders.get_mimi(None, mimi_config, num_codebooks=n_codebooks, device=device)
    lm = loaders.get_moshi_lm(None, lm_config, device=device, dtype=resolve_dtype(dtype, device))

    from stt.engine.kyutai.words import TextIds

    ids = TextIds(boundary=0, padding=3, vocab_size=int(lm_config["text_card"]), control=frozenset({1, 2}))
    timing = SttTiming(delay_s=0.5, silence_prefix_s=0.0)
    return KyutaiModel(mimi, lm, IdNames(ids), ids, timing, torch.device(device))


class IdNames:
    """A tokenizer stand-in for untrained models: names piece ids ("t42"), one piece a word."""

    def __init__(self, ids: TextIds) -> None:
        self._ids = ids

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(f"t{i}" for i in ids if self._ids.is_piece(i))

    def count(self, word: str) -> int:
        return max(1, word.count("t"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight Kyutai STT checkpoint.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_checkpoint(args.directory, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
