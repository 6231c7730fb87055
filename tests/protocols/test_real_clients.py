"""Real clients against `stt serve` in its own process with the default Whisper engine.

Accuracy margins are wide on purpose: CTranslate2 picks int8 kernels by CPU, so a word may
differ from machine to machine; corpus accuracy is benchmarks/' business.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stt.audio import read_audio
from stt.protocols.kyutai import PATH as KYUTAI_PATH
from stt.tools.wer import word_errors
from tests.conftest import serve_process
from tests.protocols.kyutai_clients import file_script

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"
API_KEY = "public_token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SAMPLES / "manifest.jsonl").is_file(), reason=f"shared sample clips not found at {SAMPLES}"
    ),
]


def sample(clip_id: str) -> dict[str, Any]:
    for line in (SAMPLES / "manifest.jsonl").read_text().splitlines():
        row: dict[str, Any] = json.loads(line)
        if row["id"] == clip_id:
            return row
    raise KeyError(clip_id)


def wer(row: dict[str, Any], text: str) -> float:
    return word_errors(row["ref_text"], text, row["lang"]).wer


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_process("--engine", "whisper", "--api-keys", API_KEY) as (_, served_port):
        yield served_port


@pytest.mark.parametrize("rtf", [1.01, 1000.0])
def test_kyutai_file_script_gets_every_word(port: int, rtf: float) -> None:
    row = sample("en-01")
    audio = read_audio(SAMPLES / row["wav24k_path"])
    run = asyncio.run(file_script(f"ws://127.0.0.1:{port}{KYUTAI_PATH}", audio, rtf=rtf, api_key=API_KEY))
    assert run.marker_seen
    assert run.other == [{"type": "Ready"}], run.other
    assert wer(row, run.transcript) <= 0.2, run.transcript
    starts = [w.start for w in run.words]
    assert starts == sorted(starts)
    assert all(w.start <= w.stop <= 1.0 + row["duration_s"] + 0.5 for w in run.words), run.words
