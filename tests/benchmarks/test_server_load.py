"""The load benchmark runs end to end at a tiny level (its numbers are for benchmarks, not CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stt.tools.serve_process import clean_env

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "server_load.py"


@pytest.mark.slow
def test_server_load_runs_a_small_level_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--levels",
            "6",
            "--seconds",
            "2",
            "--p99-max-ms",
            "10000",
            "--json-out",
            str(out),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    level = json.loads(out.read_text())["levels"][0]
    assert level["streams"] == level["sustained"] == 6 and level["wrong_streams"] == 0
    assert level["words"] == level["expected_words"] > 0
    assert level["added_p99_ms"] is not None and level["server_cpu_pct"] is not None
    assert "| 6 | 6 | 0 |" in done.stdout
