"""The Kyutai engine behind the real server: concurrent clients, and `stt serve --engine kyutai`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stt.audio import float32_to_pcm16, pcm16_to_float32, write_wav
from stt.constants import CHUNK_BYTES, FRAME_SAMPLES
from stt.tools.client import StreamResult, stream_audio
from stt.tools.serve_process import clean_env
from tests.engine.kyutai.helpers import KYUTAI_LIBS, SKIP_REASON, build, clip
from tests.helpers import app_client, live_server, serve_process

pytestmark = pytest.mark.skipif(not KYUTAI_LIBS, reason=SKIP_REASON)
SLOTS = 4


def audio(seed: int) -> np.ndarray:
    """A clip with a partial last frame, as a client's audio rarely ends on a frame boundary."""
    rng = np.random.default_rng(100 + seed)
    tail = rng.normal(0, 0.1, FRAME_SAMPLES // 3)
    flat = np.concatenate([clip(seed).reshape(-1), tail])
    return pcm16_to_float32(float32_to_pcm16(flat))


def test_concurrent_clients_each_get_the_words_of_their_own_audio(tiny_checkpoint: Path) -> None:
    clips = [audio(seed) for seed in range(3)]
    alone = [build(tiny_checkpoint, slots=SLOTS).transcribe_words([c])[0] for c in clips]
    assert all(alone) and len({tuple(w.text for w in ws) for ws in alone}) == 3
    with live_server(build(tiny_checkpoint, slots=SLOTS), slots=SLOTS) as server:

        async def one(i: int) -> StreamResult:
            return await stream_audio(server.ws_url, clips[i], chunk_samples=[1920, 5000, 11520][i])

        async def main() -> list[StreamResult]:
            return await asyncio.gather(*(one(i) for i in range(3)))

        results = asyncio.run(main())
    for words, result in zip(alone, results, strict=True):
        assert result.close_code == 1000, result.messages
        assert result.ready is not None and result.ready["engine"] == "kyutai"
        got = [(w["text"], w["start_s"], w["end_s"]) for w in result.words]
        assert got == [
            (w.text, pytest.approx(w.start_s, abs=1e-3), pytest.approx(w.end_s, abs=1e-3)) for w in words
        ]
        assert result.transcript == " ".join(w.text for w in words)


def test_stt_serve_runs_the_kyutai_engine_on_a_checkpoint_directory(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    samples = audio(0)
    wav = tmp_path / "noise.wav"
    write_wav(wav, samples)
    expected = " ".join(w.text for w in build(tiny_checkpoint, slots=2).transcribe_words([samples])[0])
    flags = ("--engine", "kyutai", "--model", str(tiny_checkpoint), "--device", "cpu", "--slots", "2")
    with serve_process(*flags) as (_, port):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "stt.cli",
                "transcribe",
                str(wav),
                "--url",
                f"ws://127.0.0.1:{port}/v1/stream",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(),
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"transcript: {expected}"


def test_stt_serve_explains_a_missing_checkpoint(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stt.cli", "serve", "--engine", "kyutai", "--model", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert result.returncode == 3
    assert "config.json" in result.stderr and "Traceback" not in result.stderr


def test_pause_messages_reach_clients_that_ask_for_them(tiny_checkpoint: Path) -> None:
    engine = build(tiny_checkpoint, slots=2, kyutai_pause_threshold=0.2)
    samples = np.concatenate([audio(0), audio(1)])
    with app_client(engine, slots=2) as client, client.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["pauses"] is True
        ws.send_text(json.dumps({"type": "Configure", "pauses": True}))
        data = float32_to_pcm16(samples)
        for i in range(0, len(data), CHUNK_BYTES):
            ws.send_bytes(data[i : i + CHUNK_BYTES])
        ws.send_text(json.dumps({"type": "CloseStream"}))
        messages = []
        while (message := ws.receive_json())["type"] != "Final":
            messages.append(message)
    kinds = [m["type"] for m in messages]
    assert "Pause" in kinds and kinds.index("Word") < kinds.index("Pause")
    assert all(0.2 <= m["probability"] <= 1 for m in messages if m["type"] == "Pause")


def test_kyutais_file_script_gets_the_engines_own_words_on_api_asr_streaming(tiny_checkpoint: Path) -> None:
    from stt.protocols.kyutai import PATH
    from tests.protocols.kyutai_clients import file_script

    speech = clip(7).reshape(-1)
    # What the script sends before its Marker: 1 s of silence, the clip, 5 s of silence.
    before_marker = np.concatenate([np.zeros(24_000, np.float32), speech, np.zeros(5 * 24_000, np.float32)])
    (expected,) = build(tiny_checkpoint, slots=SLOTS).transcribe_words([before_marker])
    assert expected, "the random checkpoint says something for this clip"
    with live_server(build(tiny_checkpoint, slots=SLOTS), slots=SLOTS) as server:
        url = server.url.replace("http://", "ws://") + PATH
        run = asyncio.run(file_script(url, speech, rtf=1000))
    assert run.marker_seen and run.other == [{"type": "Ready"}]
    assert [(w.text, w.start, w.stop) for w in run.words] == [
        (w.text, pytest.approx(w.start_s, abs=1e-3), pytest.approx(w.end_s, abs=1e-3)) for w in expected
    ]
    assert len(run.steps) > len(before_marker) // FRAME_SAMPLES


def metric(text: str, name: str) -> float:
    (value,) = [float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == name]
    return value


def test_context_refreshes_are_counted_on_metrics(tiny_short_context_checkpoint: Path) -> None:
    """A 12 s stream through the tiny 40-frame window: the LM restarts a few times, and
    /metrics says so as `stt_context_refreshes_total`."""
    engine = build(tiny_short_context_checkpoint, slots=2)
    data = float32_to_pcm16(np.concatenate([clip(20, 75), clip(21, 75)]).reshape(-1))
    with app_client(engine, slots=2) as client:
        assert metric(client.get("/metrics").text, "stt_context_refreshes_total") == 0
        with client.websocket_connect("/v1/stream") as ws:
            assert ws.receive_json()["type"] == "Ready"
            ws.send_text(json.dumps({"type": "Configure", "backpressure": True}))  # 12 s at once
            for i in range(0, len(data), CHUNK_BYTES):
                ws.send_bytes(data[i : i + CHUNK_BYTES])
            ws.send_text(json.dumps({"type": "CloseStream"}))
            while ws.receive_json()["type"] != "Final":
                pass
        refreshes = metric(client.get("/metrics").text, "stt_context_refreshes_total")
    assert refreshes == engine.counters()["context_refreshes"] >= 2
