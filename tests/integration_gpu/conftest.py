"""GPU checks: skipped, with the reason, wherever torch sees no CUDA device."""

from __future__ import annotations

import importlib.util

import pytest

from tests.engine.conftest import (  # noqa: F401  (the same tiny models, on the GPU)
    tiny_checkpoint,
    tiny_short_context_checkpoint,
)


def cuda_missing() -> str | None:
    """Why the GPU tests cannot run here, or None when they can."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("moshi") is None:
        return "torch/moshi not installed (`make setup`)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False); run on a GPU machine"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "integration_gpu" in item.nodeid]
    reason = cuda_missing() if gpu_items else None
    for item in gpu_items if reason else []:
        item.add_marker(pytest.mark.skip(reason=reason))
