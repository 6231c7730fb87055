"""What every benchmark puts beside its figures, and the old tree it measures against.

The benchmarks run as scripts (`python benchmarks/NAME.py`) and their workers under
another tree's `PYTHONPATH`, so this module imports nothing from `stt`.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
