"""API keys at the app's edge: 401 before any WebSocket upgrade, three accepted places."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from stt.audio import float32_to_pcm16
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from tests.helpers import app_client

KEY = "stt_correct-horse-battery-staple"


@pytest.fixture
def client() -> Any:
    with app_client(FakeEngine(slots=4, delay_frames=1), api_keys=f"{KEY},second") as c:
        yield c


def transcribe(ws: Any, text: str) -> str:
    assert ws.receive_json()["type"] == "Ready"
    ws.send_bytes(float32_to_pcm16(encode_text(text)))
    ws.send_text(json.dumps({"type": "CloseStream"}))
    while True:
        message = ws.receive_json()
        if message["type"] == "Final":
            return str(message["transcript"])


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/v1/stream?token={KEY}", {}),
        ("/v1/stream", {"Authorization": f"Bearer {KEY}"}),
        ("/v1/stream", {"authorization": f"bearer {KEY}"}),
        ("/v1/stream", {"kyutai-api-key": KEY}),
        ("/v1/transcribe", {"kyutai-api-key": "second"}),
    ],
)
def test_a_valid_key_in_any_accepted_place_opens_the_stream(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    with client.websocket_connect(path, headers=headers) as ws:
        assert transcribe(ws, "authorised") == "authorised"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/stream", {}),
        ("/v1/stream?token=", {}),
        ("/v1/stream?token=wrong", {}),
        (f"/v1/stream?token={KEY[:-1]}", {}),  # a prefix of the real key
        (f"/v1/stream?token={KEY}x", {}),  # the key plus more
        ("/v1/stream", {"Authorization": f"Basic {KEY}"}),
        ("/v1/stream", {"Authorization": KEY}),
        ("/v1/stream", {"X-Api-Key": KEY}),
        ("/v1/stream", {"Cookie": f"token={KEY}"}),
        (f"/v1/stream?api_key={KEY}", {}),
        ("/v1/stream", {"Authorization": f"Bearer {KEY.upper()}"}),
    ],
)
def test_bypass_attempts_get_401_before_the_upgrade(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path, headers=headers):
        pass
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == "Bearer"
    assert denied.value.json()["error"]["code"] == "unauthorized"


def test_health_and_readiness_stay_open_everything_else_is_protected(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    for path in ("/metrics", "/v1/status"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    upload = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"x")})
    assert upload.status_code == 401
    assert client.get("/docs").status_code == 401
    metrics = client.get("/metrics", headers={"kyutai-api-key": KEY}).text
    assert 'stt_rejections_total{reason="unauthorized"}' in metrics


def test_without_keys_auth_is_off() -> None:
    with app_client(FakeEngine(slots=1)) as client:
        assert client.get("/v1/status").status_code == 200
        with client.websocket_connect("/v1/stream") as ws:
            assert transcribe(ws, "open") == "open"


def test_connection_rate_is_limited_per_key() -> None:
    with app_client(FakeEngine(slots=8), api_keys="a,b", connect_rate_per_s=0.001, connect_burst=2) as client:
        for _ in range(2):
            with client.websocket_connect("/v1/stream?token=a") as ws:
                ws.receive_json()
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/v1/stream?token=a"):
            pass
        assert denied.value.status_code == 429
        assert denied.value.json()["error"]["code"] == "rate_limited"
        with client.websocket_connect("/v1/stream?token=b") as ws:  # another key is unaffected
            assert ws.receive_json()["type"] == "Ready"
