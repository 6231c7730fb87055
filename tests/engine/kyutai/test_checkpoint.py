"""Locating Kyutai checkpoints: directory layout, hub ids, timing, and the cheap probe."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from stt.engine.kyutai import checkpoint as ckpt
from stt.engine.kyutai.checkpoint import CheckpointError, SttTiming, from_directory, locate, probe

PUBLISHED = ("model.safetensors", "mimi-pytorch-e351c8d8@125.safetensors", "tokenizer_en_fr_audio_8000.model")


def published_layout(root: Path, config: dict[str, Any] | None = None) -> Path:
    """The file names of kyutai/stt-1b-en_fr, with stand-in contents."""
    root.mkdir(parents=True, exist_ok=True)
    base = {
        "mimi_name": PUBLISHED[1],
        "tokenizer_name": PUBLISHED[2],
        "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
    }
    (root / "config.json").write_text(json.dumps(base if config is None else config))
    for name in PUBLISHED:
        (root / name).write_bytes(b"x")
    return root


def test_a_directory_in_the_published_layout(tmp_path: Path) -> None:
    files = locate(str(published_layout(tmp_path / "stt-1b-en_fr")))
    assert (files.lm_weights.name, files.mimi_weights.name, files.tokenizer.name) == PUBLISHED
    assert files.timing == SttTiming(delay_s=0.5, silence_prefix_s=0.0)
    assert files.pause_heads == 0 and files.mimi_config is None


def test_the_2_6b_names_and_timing_come_from_its_config(tmp_path: Path) -> None:
    root = tmp_path / "stt-2.6b-en"
    config = {
        "tokenizer_name": "tokenizer_en_audio_4000.model",
        "mimi_name": PUBLISHED[1],
        "stt_config": {"audio_delay_seconds": 2.5, "audio_silence_prefix_seconds": 1.0},
    }
    published_layout(root, config)
    with pytest.raises(CheckpointError, match=r"missing: .*tokenizer_en_audio_4000\.model"):
        from_directory(root)
    (root / "tokenizer_en_audio_4000.model").write_bytes(b"x")
    assert from_directory(root).timing == SttTiming(2.5, 1.0)


def test_missing_stt_config_falls_back_to_kyutai_reference_values(tmp_path: Path) -> None:
    files = from_directory(
        published_layout(tmp_path, {"mimi_name": PUBLISHED[1], "tokenizer_name": PUBLISHED[2]})
    )
    assert files.timing == SttTiming(ckpt.REFERENCE_DELAY_S, ckpt.REFERENCE_SILENCE_PREFIX_S)


def test_bad_directories_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        from_directory(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        from_directory(tmp_path)
    with pytest.raises(CheckpointError, match="neither a directory nor a hub id"):
        locate(str(tmp_path / "nope"))


def test_a_hub_id_downloads_each_named_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub", reason="the kyutai extra is not installed")
    hub = published_layout(tmp_path / "hub")
    asked: list[tuple[str, str]] = []

    def download(repo: str, name: str) -> str:
        asked.append((repo, name))
        return str(hub / name)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    files = locate("kyutai/stt-1b-en_fr")
    assert asked == [("kyutai/stt-1b-en_fr", n) for n in ("config.json", *PUBLISHED)]
    assert files.source == "kyutai/stt-1b-en_fr" and files.tokenizer == hub / PUBLISHED[2]


def test_offline_hub_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub", reason="the kyutai extra is not installed")

    def offline(repo: str, name: str) -> str:
        raise OSError("network unreachable")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(
        CheckpointError, match=r"could not get 'config.json' of 'kyutai/stt-1b-en_fr'.*--model"
    ):
        locate(None)


def test_probe_names_missing_libraries_without_importing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "moshi" else real(name))
    ok, detail = probe(None)
    assert not ok and "moshi" in detail and "make setup" in detail


def test_probe_checks_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert probe(str(tmp_path))[0] is False
    ok, detail = probe(str(published_layout(tmp_path / "ckpt")))
    assert ok and "delay 0.5 s" in detail


def test_probe_says_whether_a_hub_checkpoint_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub", reason="the kyutai extra is not installed")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    ok, detail = probe("kyutai/stt-2.6b-en")
    assert ok and "needs network" in detail
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: "/cache/config.json")
    assert "local Hugging Face cache" in probe("kyutai/stt-2.6b-en")[1]
