"""Shared fixtures: engines, an in-process app client, and a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from stt.config import Settings
from stt.engine.protocol import Engine
from stt.server import create_app

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without the developer's STT_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STT_")}


@contextmanager
def serve_process(*flags: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`stt serve` in its own process on a free port; yields (process, port) once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stt.cli", "serve", "--port", str(port), "--log-level", "warning", *flags],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(
                        proc.stdout.read().decode() if proc.stdout else "stt serve exited"
                    ) from None
                assert time.monotonic() < deadline, "stt serve did not start"
                time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
