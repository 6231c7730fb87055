"""The helper that runs `stt serve` in its own process for benchmarks and tests."""

from __future__ import annotations

import subprocess

import pytest

from stt.tools.serve_process import clean_env, is_ready, serve_process


def test_the_environment_loses_only_stt_settings() -> None:
    assert clean_env({"STT_ENGINE": "fake", "PATH": "/bin", "XSTT_KEEP": "1"}) == {
        "PATH": "/bin",
        "XSTT_KEEP": "1",
    }


def test_ready_server_is_stopped_at_the_end() -> None:
    with serve_process(["--engine", "fake", "--slots", "2"], output=subprocess.DEVNULL) as server:
        assert is_ready(server.port)
        assert server.ws_url == f"ws://127.0.0.1:{server.port}/v1/stream"
    assert server.proc.returncode is not None and not is_ready(server.port)


def test_a_server_that_cannot_start_raises_with_its_output() -> None:
    with (
        pytest.raises(RuntimeError, match=r"stt serve exited with \d+: .*unknown engine 'nope'"),
        serve_process(["--engine", "nope"], output=subprocess.PIPE),
    ):
        pass
