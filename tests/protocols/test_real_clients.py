"""Real clients against `stt serve` in its own process with the default Whisper engine.

Accuracy margins are wide on purpose: CTranslate2 picks int8 kernels by CPU, so a word may
differ from machine to machine; corpus accuracy is benchmarks/' business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from openai import OpenAI

from stt.protocols.kyutai import PATH as KYUTAI_PATH
from tests.helpers import SAMPLES, clip, manifest, serve_process, wer
from tests.protocols.kyutai_clients import file_script
from tests.protocols.realtime_clients import transcribe

API_KEY = "public_token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SAMPLES / "manifest.jsonl").is_file(), reason=f"shared sample clips not found at {SAMPLES}"
    ),
]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_process("--engine", "whisper", "--api-keys", API_KEY) as (_, served_port):
        yield served_port


@pytest.mark.parametrize("rtf", [1.01, 1000.0])
def test_kyutai_file_script_gets_every_word(port: int, rtf: float) -> None:
    audio = clip("en-01")
    run = asyncio.run(file_script(f"ws://127.0.0.1:{port}{KYUTAI_PATH}", audio, rtf=rtf, api_key=API_KEY))
    assert run.marker_seen
    assert run.other == [{"type": "Ready"}], run.other
    assert wer("en-01", run.transcript) <= 0.2, run.transcript
    starts = [w.start for w in run.words]
    assert starts == sorted(starts)
    end = 1.0 + manifest()["en-01"]["duration_s"] + 0.5  # the script's 1 s of silence first
    assert all(w.start <= w.stop <= end for w in run.words), run.words


def test_openai_sdk_file_transcription_with_word_times(port: int) -> None:
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0)
    data = (SAMPLES / manifest()["en-01"]["wav24k_path"]).read_bytes()
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("en-01.wav", data),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert wer("en-01", result.text) <= 0.3, result.text
    assert [m.id for m in client.models.list()] == ["whisper-base"]
    assert result.words is not None and result.segments is not None
    assert " ".join(w.word for w in result.words) == result.text
    assert " ".join(s.text for s in result.segments) == result.text
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.start <= w.end <= result.duration + 0.5 for w in result.words)
    srt = client.audio.transcriptions.create(model="x", file=("en-01.wav", data), response_format="srt")
    said = [line for line in srt.splitlines() if line and not line.isdigit() and "-->" not in line]
    assert srt.startswith("1\n00:00:0") and wer("en-01", " ".join(said)) <= 0.3, srt


def test_openai_sdk_streamed_file_transcription(port: int) -> None:
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0)
    data = (SAMPLES / manifest()["fr-01"]["wav24k_path"]).read_bytes()
    with client.audio.transcriptions.create(
        model="whisper-1", file=("fr-01.wav", data), language="fr", stream=True
    ) as events:
        *deltas, done = list(events)
    assert deltas and all(e.type == "transcript.text.delta" for e in deltas)
    assert done.type == "transcript.text.done" and "".join(e.delta for e in deltas) == done.text
    assert wer("fr-01", done.text) <= 0.4, done.text


def test_openai_sdk_manual_commit_gets_the_words_in_deltas_and_completed(port: int) -> None:
    run = asyncio.run(transcribe(f"http://127.0.0.1:{port}", clip("en-01"), turn_detection=None, items=1))
    (item,) = run.items.values()
    assert item.completed is not None
    assert "".join(item.deltas) == item.completed
    assert wer("en-01", item.completed) <= 0.2, item.completed


def test_openai_sdk_server_vad_gives_two_items_for_two_utterances(port: int) -> None:
    gap = np.zeros(2 * 24_000, np.float32)
    audio = np.concatenate([clip("en-01"), gap, clip("en-02"), gap])
    run = asyncio.run(
        transcribe(
            f"http://127.0.0.1:{port}", audio, turn_detection={"type": "server_vad"}, items=2, commit=False
        )
    )
    one, two = run.completed()
    assert wer("en-01", one) <= 0.2, one
    assert wer("en-02", two) <= 0.25, two
    assert run.types.count("input_audio_buffer.speech_started") == 2
