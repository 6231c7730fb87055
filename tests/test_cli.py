"""The `stt` command, run as a user would: real processes, real sockets."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stt.cli import main
from stt.tools.serve_process import clean_env, free_port
from tests.helpers import serve_process

STT = [sys.executable, "-m", "stt.cli"]


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """`stt serve` in its own process; yields the WebSocket URL."""
    with serve_process("--engine", "fake", "--slots", "4") as (_, port):
        yield f"ws://127.0.0.1:{port}/v1/stream"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STT, *args], check=False, capture_output=True, text=True, timeout=120, env=clean_env()
    )


@pytest.fixture
def tones_wav(tmp_path: Path) -> Path:
    path = tmp_path / "hello.wav"
    result = run_cli("tones", "hello from the cli", "-o", str(path))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    return path


def test_serve_and_transcribe_round_trip(served: str, tones_wav: Path) -> None:
    result = run_cli("transcribe", str(tones_wav), "--url", served)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["hello from the cli", "transcript: hello from the cli"]


def test_transcribe_with_eos_realtime_and_json(served: str, tones_wav: Path) -> None:
    import json

    result = run_cli("transcribe", str(tones_wav), "--url", served, "--eos", "--realtime", "--json")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["type"] == "Final" and final["transcript"] == "hello from the cli"


def test_transcribe_resamples_other_rates(served: str, tmp_path: Path) -> None:
    import soundfile

    from stt.audio import resample
    from stt.engine.fake.tones import encode_text

    path = tmp_path / "44k.wav"
    soundfile.write(path, resample(encode_text("resampled"), 24_000, 44_100), 44_100)
    result = run_cli("transcribe", str(path), "--url", served)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "transcript: resampled"


def test_transcribe_without_a_server_says_what_to_do(tones_wav: Path) -> None:
    result = run_cli("transcribe", str(tones_wav), "--url", f"ws://127.0.0.1:{free_port()}/v1/stream")
    assert result.returncode == 3
    assert "cannot connect" in result.stderr and "make serve" in result.stderr


def test_engines_lists_the_fake(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "yes" in out


def test_invalid_settings_fail_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--slots", "0"]) == 2
    assert "slots must be >= 1" in capsys.readouterr().err


def test_unknown_engine_fails_fast() -> None:
    result = run_cli("serve", "--engine", "nope", "--port", str(free_port()))
    assert result.returncode == 3
    assert "unknown engine 'nope'" in result.stderr


def test_environment_variables_configure_the_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STT_SLOTS", "-1")
    assert main(["engines"]) == 2
    assert "slots must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags", [["--kyutai-compile", "maybe"], ["--kyutai-cuda-graphs", "2"], ["--port", "x"]]
)
def test_a_bad_flag_value_is_an_error(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Flags go through the settings' one parser: `--kyutai-compile maybe` is refused, never
    read as false."""
    with pytest.raises(SystemExit) as exited:
        main(["engines", *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flags[0]}: must be " in err and repr(flags[1]) in err


def test_a_bad_boolean_in_the_environment_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STT_KYUTAI_COMPILE", "maybe")
    assert main(["engines"]) == 2
    assert "STT_KYUTAI_COMPILE must be a boolean" in capsys.readouterr().err


def test_flags_win_over_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STT_SLOTS", "-1")
    monkeypatch.setenv("STT_ENGINE", "kyutai")
    assert main(["engines", "--slots", "2", "--engine", "fake"]) == 0
    fake_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("fake "))
    assert fake_line.endswith("(configured)")


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from stt.config import Settings, options

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in options(Settings):
        assert option.flag in out and option.env in out
