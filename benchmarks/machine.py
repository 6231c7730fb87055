"""What every benchmark puts beside its figures, and the old tree it measures against.

The benchmarks run as scripts (`python benchmarks/NAME.py`) and their workers under
another tree's `PYTHONPATH`, so this module imports nothing from `stt`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository the benchmarks belong to (the "new" tree)."""
DEFAULT_MANIFEST = ROOT.parent / "shared" / "samples" / "manifest.jsonl"
"""The team's samples with their known texts, beside the checkout."""


def cpu_model() -> str:
    """The CPU's model name (as `lscpu` shows it): CTranslate2 and numpy kernels differ by CPU."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


@contextlib.contextmanager
def detached_worktree(repo: Path, rev: str) -> Iterator[Path]:
    """A detached checkout of `rev` beside `repo`, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"stt-{rev}-"))
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False)


def run_worker(
    label: str, tree: Path, script: str, args: list[str]
) -> tuple[dict[str, Any], tuple[float, ...]]:
    """Run `script --worker --json-out F ARGS` on `tree`'s `stt` in a process of its own.

    Returns the worker's JSON and the load average before it. The worker reports where it
    imported `stt` from (key "stt"); a run that measured another tree than `tree` is refused.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
        env["PYTHONPATH"] = str(tree / "src")
        load_before = os.getloadavg()
        subprocess.run(
            [sys.executable, script, "--worker", "--json-out", out.name, *args], env=env, check=True
        )
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    if Path(result["stt"]) != (tree / "src").resolve():
        raise RuntimeError(f"{label}: imported stt from {result['stt']}, not {tree / 'src'}")
    return result, load_before
