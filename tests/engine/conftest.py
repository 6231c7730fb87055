"""Kyutai engine fixtures: a tiny random checkpoint in the published layout, built once.

The CPU settings for moshi are made by tests.engine.kyutai.helpers, imported first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.kyutai.helpers import KYUTAI_LIBS, SKIP_REASON


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tiny stt-1b-en_fr-shaped model, random weights, 0.48 s delay, four pause heads."""
    if not KYUTAI_LIBS:
        pytest.skip(SKIP_REASON)
    import torch

    torch.set_num_threads(1)
    from stt.engine.kyutai.testing import write_checkpoint

    yield write_checkpoint(tmp_path_factory.mktemp("tiny-stt"))


@pytest.fixture(scope="session")
def tiny_prefixed_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_checkpoint, with a silence prefix (as stt-2.6b-en has)."""
    if not KYUTAI_LIBS:
        pytest.skip(SKIP_REASON)
    from stt.engine.kyutai.testing import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-stt-prefix"), silence_prefix_s=0.16, seed=1)


@pytest.fixture(scope="session")
def tiny_short_context_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_checkpoint with a 40-frame attention window, so context refreshes come
    every few seconds of audio."""
    if not KYUTAI_LIBS:
        pytest.skip(SKIP_REASON)
    from stt.engine.kyutai.testing import tiny_lm_config, write_checkpoint

    config = tiny_lm_config() | {"context": 40}
    return write_checkpoint(tmp_path_factory.mktemp("tiny-stt-short-context"), lm_config=config)
