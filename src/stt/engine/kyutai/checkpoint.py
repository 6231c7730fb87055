"""Where a Kyutai STT checkpoint's files are, and the timing its config.json declares.

A checkpoint is named by a local directory, a mounted volume path (also a directory) or a
Hugging Face hub id. Either way it holds Kyutai's published layout: `config.json` (the LM
architecture plus the names of the other files and an `stt_config`), the LM weights, the
Mimi codec weights and the SentencePiece text tokenizer. Only paths and JSON are handled
here, so this module imports neither torch nor moshi and `stt engines` can use it cheaply.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stt.constants import HUB_ID

log = logging.getLogger("stt.engine.kyutai.engine")

DEFAULT_MODEL = "kyutai/stt-1b-en_fr"
CONFIG_NAME = "config.json"
LM_NAME = "model.safetensors"
"""moshi's default name for the LM weights when config.json does not give `moshi_name`."""
MIMI_NAME = "mimi-pytorch-e351c8d8@125.safetensors"
"""The Mimi weights file of the published STT checkpoints (config key `mimi_name`)."""
TOKENIZER_NAME = "tokenizer_en_fr_audio_8000.model"
"""stt-1b-en_fr's tokenizer (config key `tokenizer_name`; stt-2.6b-en: tokenizer_en_audio_4000.model)."""

REFERENCE_DELAY_S = 5.0
REFERENCE_SILENCE_PREFIX_S = 1.0
"""What Kyutai's reference script (delayed-streams-modeling, stt_from_file_pytorch.py) assumes
when `stt_config` lacks a value: generous, so a flush never cuts the last word."""

PAUSE_HEAD = 2
"""Which extra head of the LM predicts the end of a turn; Kyutai's reference
(stt_from_file_pytorch.py --vad) reads head 2, class 0, so a checkpoint needs at least three."""
END_OF_TURN_CHECKPOINT = "kyutai/stt-1b-en_fr-candle"
"""The published checkpoint whose LM has the pause heads (the PyTorch stt-1b-en_fr has none;
moshi's PyTorch loader reads this one too)."""


class CheckpointError(RuntimeError):
    """The checkpoint cannot be found or read; the message says which file and what to do."""


@dataclass(frozen=True)
class SttTiming:
    """How the model's text lags its audio, from config.json's `stt_config`."""

    delay_s: float
    """Text comes this long after the audio it transcribes (0.5 s for stt-1b-en_fr)."""
    silence_prefix_s: float
    """Silence the model expects before a stream's audio (1.0 s for stt-2.6b-en)."""


@dataclass(frozen=True)
class CheckpointFiles:
    """Resolved local paths of one checkpoint, and its parsed config."""

    source: str
    config: dict[str, Any]
    lm_weights: Path
    mimi_weights: Path
    tokenizer: Path
    mimi_config: dict[str, Any] | None = None
    """Codec architecture when the checkpoint carries one (`mimi_config_name`); None means
    moshi's published Mimi."""

    @property
    def timing(self) -> SttTiming:
        return read_timing(self.config)

    @property
    def pause_heads(self) -> int:
        """Extra "pause prediction" heads (semantic VAD) of the LM; 0 when it has none."""
        return int(self.config.get("extra_heads_num_heads", 0))

    @property
    def end_of_turn(self) -> bool:
        """Whether the LM has the head Kyutai reads for end of turn."""
        return self.pause_heads > PAUSE_HEAD


def end_of_turn_note(pause_heads: int, pause_threshold: float) -> str:
    """What `stt engines` and the start-up log say about Pause events for this checkpoint."""
    if pause_heads > PAUSE_HEAD:
        state = "on" if pause_threshold > 0 else "off (pause threshold 0)"
        return f"end of turn: {state} (pause head {PAUSE_HEAD} of {pause_heads})"
    note = (
        f"end of turn: none ({pause_heads} extra heads, head {PAUSE_HEAD} needed; "
        f"{END_OF_TURN_CHECKPOINT} has it)"
    )
    if pause_threshold > 0:
        note += ": no Pause events despite the pause threshold"
    return note


def read_timing(config: dict[str, Any]) -> SttTiming:
    stt = config.get("stt_config") or {}
    missing = [k for k in ("audio_delay_seconds", "audio_silence_prefix_seconds") if k not in stt]
    if missing:
        log.warning("config.json stt_config lacks %s; using Kyutai's reference defaults", missing)
    return SttTiming(
        delay_s=float(stt.get("audio_delay_seconds", REFERENCE_DELAY_S)),
        silence_prefix_s=float(stt.get("audio_silence_prefix_seconds", REFERENCE_SILENCE_PREFIX_S)),
    )


def file_names(config: dict[str, Any]) -> dict[str, str]:
    """The checkpoint's file names, by role, as its config.json names them."""
    names = {
        "lm_weights": str(config.get("moshi_name", LM_NAME)),
        "mimi_weights": str(config.get("mimi_name", MIMI_NAME)),
        "tokenizer": str(config.get("tokenizer_name", TOKENIZER_NAME)),
    }
    if config.get("mimi_config_name"):
        names["mimi_config"] = str(config["mimi_config_name"])
    return names


def is_hub_id(model: str) -> bool:
    return bool(HUB_ID.match(model)) and not Path(model).exists()


def locate(model: str | None) -> CheckpointFiles:
    """Resolve `model` (directory, volume path or hub id) to local files, downloading from
    the hub when it is an id. Raises CheckpointError saying what is missing."""
    model = model or DEFAULT_MODEL
    if is_hub_id(model):
        return _from_hub(model)
    return from_directory(Path(model))


def from_directory(root: Path) -> CheckpointFiles:
    if not root.is_dir():
        raise CheckpointError(
            f"model {str(root)!r} is neither a directory nor a hub id (owner/name); "
            "pass a checkpoint directory or e.g. kyutai/stt-1b-en_fr"
        )
    config = _read_json(root / CONFIG_NAME)
    paths = {role: root / name for role, name in file_names(config).items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(root)!r} is incomplete, missing: {', '.join(missing)} "
            "(the published layout has config.json, model.safetensors, the Mimi weights and the tokenizer)"
        )
    return _files(str(root), config, paths)


def _from_hub(repo: str) -> CheckpointFiles:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise CheckpointError(f"loading {repo!r} from the hub needs huggingface_hub: {exc}") from exc

    def fetch(name: str) -> Path:
        try:
            return Path(hf_hub_download(repo, name))
        except Exception as exc:  # offline, unknown repo, missing file: all end the same way
            raise CheckpointError(
                f"could not get {name!r} of {repo!r} from the Hugging Face hub ({type(exc).__name__}: "
                f"{exc}); without network access, download the checkpoint elsewhere and pass its "
                "directory with --model"
            ) from exc

    config = _read_json(fetch(CONFIG_NAME))
    paths = {role: fetch(name) for role, name in file_names(config).items()}
    return _files(repo, config, paths)


def _files(source: str, config: dict[str, Any], paths: dict[str, Path]) -> CheckpointFiles:
    mimi_config = _read_json(paths["mimi_config"]) if "mimi_config" in paths else None
    return CheckpointFiles(
        source, config, paths["lm_weights"], paths["mimi_weights"], paths["tokenizer"], mimi_config
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{str(path)!r} not found: a Kyutai checkpoint starts with config.json"
        ) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(path)!r} must hold a JSON object")
    return data


MISSING_LIBS_HINT = (
    "`make setup` installs them (the `kyutai` extra, then moshi with --no-deps as pyproject's "
    "[tool.stt] no-deps says)"
)


def _hub_cache_state(repo: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, CONFIG_NAME), str):
        return "is in the local Hugging Face cache"
    return "is fetched from the Hugging Face hub at start (needs network; not cached here)"


def probe(model: str | None, pause_threshold: float = 0.0) -> tuple[bool, str]:
    """Whether the engine can load here and why not, without importing torch or moshi."""
    model = model or DEFAULT_MODEL
    needed = ("torch", "moshi", "sentencepiece", "safetensors") + (
        ("huggingface_hub",) if is_hub_id(model) else ()
    )
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        return False, f"needs {', '.join(missing)}: {MISSING_LIBS_HINT}"
    if is_hub_id(model):
        return True, f"{model} {_hub_cache_state(model)}; GPU recommended"
    try:
        files = from_directory(Path(model))
    except CheckpointError as exc:
        return False, str(exc)
    timing = files.timing
    return True, (
        f"checkpoint {model} (delay {timing.delay_s:g} s, "
        f"{end_of_turn_note(files.pause_heads, pause_threshold)}); GPU recommended"
    )
