"""`stt serve` in a process of its own, for benchmarks and tests that must not share its CPU.

The load and soak benchmarks, the CPU engine benchmark and the drain and CLI tests all start
a real server this way: the developer's `STT_*` environment left out, a free port, and ready
only once `/readyz` answers 200 (a model engine is loaded and warmed by then).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without `STT_*` settings, so only the given flags configure the server."""
    return {k: v for k, v in (os.environ if environ is None else environ).items() if not k.startswith("STT_")}


def is_ready(port: int, timeout_s: float = 1.0) -> bool:
    """Whether the server on `port` answers `/readyz` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as response:
            return int(response.status) == 200
    except OSError:
        return False


@dataclass(frozen=True)
class ServedProcess:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"


@contextmanager
def serve_process(
    flags: Sequence[str],
    *,
    ready_timeout_s: float = 120.0,
    stop_signal: signal.Signals | None = signal.SIGTERM,
    stop_timeout_s: float = 60.0,
    output: int | IO[bytes] | None = None,
) -> Iterator[ServedProcess]:
    """Start `stt serve --port P --log-level warning *flags`; yield once it is ready.

    On exit the server gets `stop_signal` (SIGTERM drains it; None kills it at once) and is
    killed if it has not ended after `stop_timeout_s`. `output` is where its output goes
    (`subprocess.PIPE` to read it back: a server that dies at start raises with its output).
    """
    port = free_port()
    command = [sys.executable, "-m", "stt.cli", "serve", "--port", str(port), "--log-level", "warning"]
    errors = subprocess.STDOUT if output is not None else None
    proc = subprocess.Popen([*command, *flags], env=clean_env(), stdout=output, stderr=errors)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not is_ready(port, timeout_s=0.5):
            if proc.poll() is not None:
                said = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"stt serve exited with {proc.returncode}: {said}".strip())
            if time.monotonic() > deadline:
                raise RuntimeError(f"stt serve was not ready within {ready_timeout_s:g} s")
            time.sleep(0.1)
        yield ServedProcess(proc, port)
    finally:
        if proc.poll() is None:
            if stop_signal is None:
                proc.kill()
            else:
                proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
