"""First look at a real Kyutai checkpoint: does the engine transcribe as Kyutai's own loop does?

One command for whoever first has the weights and a GPU. It prints what the engine reads from
the checkpoint (`delays`, the extra heads and end of turn, the special text ids, dtype,
context), then transcribes the sample manifest twice: through the engine, every clip in one
batch as the server runs them, and through Kyutai's reference loop (moshi's `LMGen` at batch 1
after Mimi, as delayed-streams-modeling's stt_from_file_pytorch.py does: the checkpoint's
silence prefix, the audio, then the delay of silence). It prints both transcripts of each
clip and both WERs against the manifest. The two differ where the engine deliberately differs
(it feeds one frame of lead-in so the first frame is heard; see docs/protocol.md), so compare
WERs, not strings: the engine's must not be worse.

    python benchmarks/kyutai_checkpoint.py --model kyutai/stt-1b-en_fr
    python benchmarks/kyutai_checkpoint.py --model /models/kyutai/stt-2.6b-en --limit 10

Writes JSON (`--json-out`). Exits 0 when both ran, 1 when the engine's WER is worse than the
reference's by more than `--tolerance`, 2 when nothing could run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stt.audio import read_audio
from stt.constants import FRAME_SAMPLES
from stt.tools.samples import read_manifest
from stt.tools.wer import WerStats, corpus_wer, word_errors

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "samples" / "manifest.jsonl"


@dataclass
class ClipResult:
    id: str
    lang: str
    reference: str
    engine: str
    kyutai: str
    engine_wer: float
    kyutai_wer: float


def describe(model: Any) -> dict[str, Any]:
    """What the engine reads from the checkpoint, as plain values."""
    from stt.engine.kyutai.checkpoint import end_of_turn_note
    from stt.engine.kyutai.engine import text_lag

    lm = model.lm
    delays = [int(d) for d in lm.delays]
    heads = len(lm.extra_heads)
    return {
        "delays_max": max(delays),
        "delays_nonzero": [i for i, d in enumerate(delays) if d],
        "text_lag_frames": text_lag(delays),
        "extra_heads": heads,
        "end_of_turn": end_of_turn_note(heads, 0.5),
        "dtype": str(next(lm.parameters()).dtype),
        "device": str(model.device),
        "context": getattr(lm.transformer, "context", None),
        "text_card": int(lm.text_card),
        "ids": {
            "boundary": model.ids.boundary,
            "padding": model.ids.padding,
            "vocab_size": model.ids.vocab_size,
            "control": sorted(model.ids.control),
        },
        "delay_s": model.timing.delay_s,
        "silence_prefix_s": model.timing.silence_prefix_s,
    }


def kyutai_reference(model: Any, audio: npt.NDArray[np.float32]) -> str:
    """Kyutai's loop (stt_from_file_pytorch.py): prefix silence, audio, delay of silence, one
    frame at a time through Mimi and `LMGen` at batch 1; the text is every word piece."""
    import torch
    from moshi.models.lm import LMGen

    frame_rate = 1 / (FRAME_SAMPLES / 24000)
    prefix = math.ceil(model.timing.silence_prefix_s * frame_rate)
    suffix = math.ceil(model.timing.delay_s * frame_rate)
    padded = np.concatenate(
        [np.zeros(prefix * FRAME_SAMPLES, np.float32), audio, np.zeros(suffix * FRAME_SAMPLES, np.float32)]
    )
    padded = np.pad(padded, (0, -padded.size % FRAME_SAMPLES))
    gen = LMGen(model.lm, use_sampling=False, temp=0.0, temp_text=0.0)
    pieces: list[int] = []
    with model.mimi.streaming(1), gen.streaming(1), torch.no_grad():
        for frame in padded.reshape(-1, FRAME_SAMPLES):
            chunk = torch.from_numpy(frame).to(model.device)[None, None, :]
            tokens = gen.step(model.mimi.encode(chunk))
            if tokens is not None:
                token = int(tokens[0, 0, 0])
                if model.ids.is_piece(token):
                    pieces.append(token)
    return " ".join(model.tokenizer.decode(pieces).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="hub id or directory (default kyutai/stt-1b-en_fr)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=None, help="first N speech clips only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tolerance", type=float, default=0.02, help="allowed WER excess of the engine")
    parser.add_argument("--json-out", type=Path, default=Path("kyutai_checkpoint.json"))
    args = parser.parse_args(argv)

    from stt.engine.kyutai.checkpoint import CheckpointError, locate
    from stt.engine.kyutai.engine import KyutaiEngine, load_model
    from stt.engine.kyutai.options import KyutaiOptions

    try:
        model = load_model(locate(args.model), args.device, args.dtype)
    except CheckpointError as exc:
        print(f"cannot load the checkpoint: {exc}", file=sys.stderr)
        return 2
    facts = describe(model)
    for key, value in facts.items():
        print(f"{key:>18}: {value}")
    rows = [r for r in read_manifest(args.manifest) if r.get("ref_text")][: args.limit]
    if not rows:
        print(f"no speech clips in {args.manifest}", file=sys.stderr)
        return 2
    clips = [read_audio(args.manifest.parent / r["wav24k_path"]) for r in rows]

    t0 = time.perf_counter()
    engine = KyutaiEngine(model, slots=min(len(clips), 64), options=KyutaiOptions(pause_threshold=0.0))
    try:
        engine_texts = engine.transcribe_batch(clips)
    finally:
        engine.close()
    engine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kyutai_texts = [kyutai_reference(model, clip) for clip in clips]
    kyutai_s = time.perf_counter() - t0

    results: list[ClipResult] = []
    engine_stats: list[WerStats] = []
    kyutai_stats: list[WerStats] = []
    for row, ours, theirs in zip(rows, engine_texts, kyutai_texts, strict=True):
        lang = row.get("lang")
        engine_stats.append(word_errors(row["ref_text"], ours, lang))
        kyutai_stats.append(word_errors(row["ref_text"], theirs, lang))
        results.append(
            ClipResult(
                row["id"],
                str(lang),
                row["ref_text"],
                ours,
                theirs,
                engine_stats[-1].wer,
                kyutai_stats[-1].wer,
            )
        )
        print(f"\n{row['id']} ({lang})  reference: {row['ref_text']}")
        print(f"  engine  WER {engine_stats[-1].wer:5.2f}: {ours}")
        print(f"  kyutai  WER {kyutai_stats[-1].wer:5.2f}: {theirs}")
    engine_wer, kyutai_wer = corpus_wer(engine_stats), corpus_wer(kyutai_stats)
    same = sum(r.engine == r.kyutai for r in results)
    print(f"\n{len(results)} clips: engine WER {engine_wer:.3f} ({engine_s:.1f} s, one batch), ")
    print(f"{'':>10}kyutai reference WER {kyutai_wer:.3f} ({kyutai_s:.1f} s, one clip at a time)")
    print(f"identical transcripts: {same}/{len(results)}")
    matches = engine_wer <= kyutai_wer + args.tolerance
    print("engine matches Kyutai's loop" if matches else "ENGINE IS WORSE THAN KYUTAI'S LOOP")
    args.json_out.write_text(
        json.dumps(
            {
                "checkpoint": facts,
                "engine_wer": engine_wer,
                "kyutai_wer": kyutai_wer,
                "identical": same,
                "clips": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    print(f"wrote {args.json_out}")
    return 0 if matches else 1


if __name__ == "__main__":
    raise SystemExit(main())
