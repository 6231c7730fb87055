"""benchmarks/kyutai_checkpoint.py on the tiny random checkpoint: the first-real-checkpoint
check runs end to end (facts, engine batch, Kyutai's loop, both WERs) on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stt.audio import write_wav
from tests.engine.kyutai.helpers import KYUTAI_LIBS, SKIP_REASON, clip

pytestmark = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)


def test_prints_the_checkpoint_facts_both_transcripts_and_wers(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = pytest.importorskip("benchmarks.kyutai_checkpoint", reason="benchmarks/ is not shipped").main
    rows = []
    for i, text in enumerate(["hello world", "bonjour le monde"]):
        write_wav(tmp_path / f"c{i}.wav", clip(i, 20).reshape(-1))
        rows.append({"id": f"c{i}", "lang": "en", "wav24k_path": f"c{i}.wav", "ref_text": text})
    rows.append({"id": "silence", "lang": "en", "wav24k_path": "c0.wav", "ref_text": ""})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "check.json"
    args = ["--model", str(tiny_checkpoint), "--manifest", str(manifest), "--device", "cpu"]
    assert main([*args, "--tolerance", "100", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    for fact in ("delays_max", "extra_heads", "end_of_turn", "dtype", "boundary"):
        assert fact in printed
    assert printed.count("engine  WER") == 2 and printed.count("kyutai  WER") == 2
    result = json.loads(out.read_text())
    assert result["checkpoint"]["extra_heads"] == 4 and result["checkpoint"]["delays_max"] == 0
    assert [c["id"] for c in result["clips"]] == ["c0", "c1"]
    assert all(np.isfinite([c["engine_wer"], c["kyutai_wer"]]).all() for c in result["clips"])
