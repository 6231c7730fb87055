"""Shared fixtures: engines, an in-process app client, and a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from stt.config import Settings
from stt.engine.interface import Engine
from stt.server.app import create_app
from stt.tools.serve_process import serve_process as serving

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: never read the developer's environment."""
    return Settings.from_env({}, **overrides)


@contextmanager
def app_client(engine: Engine, **overrides: Any) -> Iterator[TestClient]:
    """The app driven in-process by Starlette's TestClient (lifespan included)."""
    app = create_app(make_settings(**overrides), engine=engine)
    with TestClient(app) as client:
        yield client


@dataclass
class LiveServer:
    url: str
    """Base HTTP URL, e.g. http://127.0.0.1:PORT"""
    server: uvicorn.Server
    app: Any

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/stream"


@contextmanager
def live_server(engine: Engine, **overrides: Any) -> Iterator[LiveServer]:
    """A real uvicorn server on a free loopback port, in a background thread."""
    settings_ = make_settings(**overrides)
    app = create_app(settings_, engine=engine)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws_max_size=16 << 20,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def run() -> Callable[..., Any]:
    """Run a coroutine to completion in a fresh event loop."""

    def runner(coro: Any) -> Any:
        return asyncio.run(coro)

    return runner


@contextmanager
def serve_process(*flags: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`stt serve` in its own process, ready; yields (process, port) and kills it at the end."""
    with serving(flags, ready_timeout_s=60, stop_signal=None, output=subprocess.PIPE) as served:
        yield served.proc, served.port
