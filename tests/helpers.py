"""What many test modules share: settings, servers (in-process, in a thread, in a process),
WebSocket conversation helpers, event waits and the shared sample clips.

Test modules import from here (and from `tests.fakes`, `tests.rawws`), never from each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import soundfile
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stt.audio import float32_to_pcm16, read_audio, resample
from stt.config import Settings
from stt.constants import SAMPLE_RATE
from stt.engine.fake.tones import ALPHABET, encode_text
from stt.engine.interface import Engine
from stt.server.app import DrainingServer, build_server, create_app
from stt.tools.client import Received
from stt.tools.samples import read_manifest
from stt.tools.serve_process import serve_process as serving
from stt.tools.wer import word_errors

_T = TypeVar("_T")

ROOT = Path(__file__).resolve().parents[1]

KEEP = '{"type": "KeepAlive"}'
FINALIZE = '{"type": "Finalize"}'
CLOSE = '{"type": "CloseStream"}'


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: never read the developer's environment."""
    return Settings.from_env({}, **overrides)


def pcm(text: str, **kwargs: Any) -> bytes:
    """Tone-coded `text` (see stt.engine.fake.tones) as PCM16 bytes, as a client sends it."""
    return float32_to_pcm16(encode_text(text, **kwargs))


def tone_file(text: str, *, rate: int = SAMPLE_RATE, format: str = "WAV", **kwargs: Any) -> bytes:
    """Tone-coded `text` as an audio file (WAV, FLAC, ...) at `rate`, as an uploader sends it."""
    buffer = io.BytesIO()
    subtype = "PCM_16" if format in ("WAV", "FLAC") else None
    soundfile.write(
        buffer, resample(encode_text(text, **kwargs), SAMPLE_RATE, rate), rate, format=format, subtype=subtype
    )
    return buffer.getvalue()


def unique_texts(n: int, seed: int = 1) -> list[str]:
    """n transcripts that share no word, so any foreign word is cross-talk."""
    rng = random.Random(seed)
    used: set[str] = set()
    texts = []
    for _ in range(n):
        words: list[str] = []
        while len(words) < rng.randint(2, 5):
            word = "".join(rng.choice(ALPHABET[:26]) for _ in range(rng.randint(2, 7)))
            if word not in used:
                used.add(word)
                words.append(word)
        texts.append(" ".join(words))
    return texts


async def hostile_client(url: str, items: list[bytes | str]) -> tuple[list[dict[str, Any]], int | None]:
    """Connect, read Ready, send `items` as they are, then read to the close: (messages after
    Ready, close code). The server may close before everything is sent; what it said before
    closing is still read."""
    async with connect(url, max_size=None, ping_interval=None) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "Ready", ready
        messages: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            for item in items:
                await ws.send(item)
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                messages.append(json.loads(raw))
        return messages, ws.close_code


class MessageWatch:
    """An `on_message` callback for `stt.tools.client.stream_audio` that lets a test await
    the moment a stream has received a given number of messages of one type."""

    def __init__(self, kind: str, count: int = 1) -> None:
        self.kind = kind
        self.count = count
        self.seen = 0
        self.reached = asyncio.Event()

    def __call__(self, received: Received) -> None:
        if received.message.get("type") == self.kind:
            self.seen += 1
            if self.seen >= self.count:
                self.reached.set()

    async def wait(self, timeout_s: float = 30.0) -> None:
        await asyncio.wait_for(self.reached.wait(), timeout_s)


# -- the app in-process ------------------------------------------------------------------------


@contextmanager
def app_client(engine: Engine, **overrides: Any) -> Iterator[TestClient]:
    """The app driven in-process by Starlette's TestClient (lifespan included)."""
    app = create_app(make_settings(**overrides), engine=engine)
    with TestClient(app) as client:
        yield client


def wait_for_no_streams(client: TestClient, timeout_s: float = 10.0) -> None:
    """Block until the app of `client` has no stream open (every session ended)."""
    lifecycle = client.app.state.lifecycle  # type: ignore[attr-defined]
    assert client.portal is not None, "use inside `with app_client(...)`"
    assert client.portal.call(lifecycle.wait_empty, timeout_s), "streams still open"


def collect(ws: Any) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes; returns (messages, close code)."""
    messages = []
    while True:
        try:
            messages.append(ws.receive_json())
        except WebSocketDisconnect as exc:
            return messages, exc.code


def expect_error(ws: Any, code: str, close_code: int) -> dict[str, Any]:
    """Read to the close: exactly one Error with `code`, and the matching close code."""
    messages, closed_with = collect(ws)
    assert closed_with == close_code, messages
    errors = [m for m in messages if m["type"] == "Error"]
    assert len(errors) == 1 and errors[0]["code"] == code and errors[0]["close_code"] == close_code
    assert errors[0]["message"]
    return errors[0]


# -- the production server in a thread ---------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    """Base HTTP URL, e.g. http://127.0.0.1:PORT"""
    server: DrainingServer
    app: FastAPI

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def call(self, coroutine: Callable[[], Coroutine[Any, Any, _T]], timeout_s: float = 30.0) -> _T:
        """Run a coroutine on the server's own loop and return its result (from any thread)."""
        assert self.server.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine(), self.server.loop).result(timeout_s)

    def wait_for_no_streams(self, timeout_s: float = 10.0) -> None:
        """Block until every session of the server has ended."""
        assert self.call(lambda: self.app.state.lifecycle.wait_empty(timeout_s)), "streams still open"


@contextmanager
def live_server(engine: Engine, **overrides: Any) -> Iterator[LiveServer]:
    """`stt serve`'s own server (stt.server.app.build_server) on a free loopback port, in a
    background thread."""
    server = build_server(make_settings(**({"host": "127.0.0.1", "port": 0} | overrides)), engine)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    assert server.startup_done.wait(60), "uvicorn did not finish starting"
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, server.config.app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- `stt serve` in its own process ------------------------------------------------------------


@contextmanager
def serve_process(*flags: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`stt serve` in its own process, ready; yields (process, port) and kills it at the end."""
    with serving(flags, ready_timeout_s=60, stop_signal=None, output=subprocess.PIPE) as served:
        yield served.proc, served.port


# -- the shared sample clips (real speech) -----------------------------------------------------


def _find_samples() -> Path:
    """The team's shared/samples: beside the checkout, or beside a folder holding it (a git
    worktree under wt/ sees the same clips as the main checkout)."""
    for folder in [ROOT, *ROOT.parents]:
        candidate = folder / "shared" / "samples"
        if (candidate / "manifest.jsonl").is_file():
            return candidate
    return ROOT.parent / "shared" / "samples"


SAMPLES = _find_samples()


@cache
def manifest() -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in read_manifest(SAMPLES / "manifest.jsonl")}


def clip(clip_id: str) -> npt.NDArray[np.float32]:
    return read_audio(SAMPLES / manifest()[clip_id]["wav24k_path"])


def wer(clip_id: str, text: str) -> float:
    row = manifest()[clip_id]
    return word_errors(row["ref_text"], text, row["lang"]).wer
