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

import numpy as np
import pytest

from stt.audio import read_audio
from stt.protocols.kyutai import PATH as KYUTAI_PATH
from stt.tools.wer import word_errors
from tests.conftest import serve_process
from tests.protocols.kyutai_clients import file_script
from tests.protocols.realtime_clients import transcribe

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


def test_openai_sdk_manual_commit_gets_the_words_in_deltas_and_completed(port: int) -> None:
    row = sample("en-01")
    audio = read_audio(SAMPLES / row["wav24k_path"])
    run = asyncio.run(transcribe(f"http://127.0.0.1:{port}", audio, turn_detection=None, items=1))
    (item,) = run.items.values()
    assert item.completed is not None
    assert "".join(item.deltas) == item.completed
    assert wer(row, item.completed) <= 0.2, item.completed


def test_openai_sdk_server_vad_gives_two_items_for_two_utterances(port: int) -> None:
    first, second = sample("en-01"), sample("en-02")
    gap = np.zeros(2 * 24_000, np.float32)
    audio = np.concatenate(
        [read_audio(SAMPLES / first["wav24k_path"]), gap, read_audio(SAMPLES / second["wav24k_path"]), gap]
    )
    run = asyncio.run(
        transcribe(
            f"http://127.0.0.1:{port}", audio, turn_detection={"type": "server_vad"}, items=2, commit=False
        )
    )
    one, two = run.completed()
    assert wer(first, one) <= 0.2, one
    assert wer(second, two) <= 0.25, two
    assert run.types.count("input_audio_buffer.speech_started") == 2
