"""On Modal's GPU (`modal run deploy/modal_app.py::gpu_tests`): the checkpoint in the Volume
loads on the GPU and serves streams through the deployed app's code path.

Skipped unless STT_TEST_MODEL_DIR names a checkpoint directory (gpu_tests sets it to the
Volume's copy); the offline suite never has one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from stt.audio import float32_to_pcm16
from stt.constants import SAMPLE_RATE
from stt.messages import FinalStatus
from tests.helpers import app_client, make_settings

MODEL_DIR = os.environ.get("STT_TEST_MODEL_DIR")

pytestmark = pytest.mark.skipif(
    not MODEL_DIR or not (Path(MODEL_DIR) / "config.json").is_file(),
    reason="STT_TEST_MODEL_DIR does not name a checkpoint (set by deploy/modal_app.py::gpu_tests)",
)


def test_the_volume_checkpoint_serves_streams_on_the_gpu() -> None:
    from stt.engine.registry import build_engine

    settings = make_settings(engine="kyutai", model=MODEL_DIR, device="cuda", dtype="bfloat16", slots=8)
    engine = build_engine(settings)
    assert (engine.info.name, engine.info.max_batch) == ("kyutai", 8)
    noise = np.random.default_rng(0).normal(0, 0.01, 2 * SAMPLE_RATE).astype(np.float32)
    with app_client(engine, slots=8) as client:
        assert client.get("/readyz").json()["ready"] is True
        with client.websocket_connect("/v1/stream") as ws:
            assert ws.receive_json()["type"] == "Ready"
            ws.send_bytes(float32_to_pcm16(noise))
            ws.send_text(json.dumps({"type": "CloseStream"}))
            while (message := ws.receive_json())["type"] != "Final":
                assert message["type"] in ("Word", "Pause"), message
            assert message["status"] == FinalStatus.COMPLETE.value
            assert message["audio_s"] == pytest.approx(2.0, abs=0.1)
