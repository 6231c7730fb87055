"""Settings: the only module that reads the environment.

Each field is also a CLI flag and an environment variable (`STT_` + the field name in upper
case), as in uvicorn; flags win over the environment, which wins over the defaults. The
field metadata is the single source for `--help`, the README table and validation.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

ENV_PREFIX = "STT_"


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Server settings. Construct with `Settings.from_env()`; every value is validated."""

    engine: str = _opt("whisper", "engine to serve (see `stt engines`)")
    model: str | None = _opt(
        None, "model to load: a local directory, a mounted volume path or a hub id; default: the engine's own"
    )
    device: str = _opt("auto", "torch device for model engines: auto, cpu, cuda, cuda:N")
    dtype: str = _opt(
        "auto", "model dtype: auto (bfloat16 on GPU, float32 on CPU), bfloat16, float16, float32"
    )
    host: str = _opt("127.0.0.1", "interface to listen on")
    port: int = _opt(8000, "TCP port to listen on")
    slots: int | None = _opt(None, "concurrent streams (engine batch size); default: the engine's own")
    batch_wait_ms: float = _opt(
        0.0, "after an idle period, wait this long for more streams' frames before a step"
    )
    idle_timeout_s: float = _opt(10.0, "close a stream that sends neither audio nor KeepAlive for this long")
    max_message_bytes: int = _opt(1 << 20, "largest WebSocket message accepted")
    max_upload_bytes: int = _opt(200 << 20, "largest file accepted by POST /v1/audio/transcriptions")
    upload_wait_s: float = _opt(30.0, "how long an upload waits for a free slot before 503")
    min_chunk_ms: float = _opt(
        20.0, "smallest audio chunk accepted (only the last one before Finalize/end may be smaller)"
    )
    max_chunk_ms: float = _opt(2000.0, "largest audio chunk accepted")
    max_backlog_s: float = _opt(
        10.0, "close a stream whose audio waiting for the model exceeds this (client faster than real time)"
    )
    max_messages_per_s: float = _opt(200.0, "per-stream message rate limit, burst of 2 s (0: off)")
    max_session_s: float = _opt(3600.0, "longest stream; ended with a Final after a warning (0: no limit)")
    session_warning_s: float = _opt(60.0, "how long before max_session_s the Warning message is sent")
    max_outbox_messages: int = _opt(
        10_000, "close a stream whose client has not read this many server messages (slow consumer)"
    )
    send_timeout_s: float = _opt(30.0, "close a stream whose client accepts no data for this long")
    api_keys: str | None = _opt(None, "comma-separated API keys; auth is off when no keys are configured")
    api_keys_file: str | None = _opt(
        None, "file of hashed API keys, one `[label] sha256:<hex>` per line (see `stt keys`)"
    )
    connect_rate_per_s: float = _opt(
        10.0, "new streams per second allowed per API key (per client address without auth; 0: off)"
    )
    connect_burst: int = _opt(100, "burst of new streams allowed above connect_rate_per_s")
    drain_grace_s: float = _opt(30.0, "on SIGTERM, how long open streams may run before being flushed")
    fake_delay_frames: int = _opt(6, "fake engine: frames of delay between audio and words")
    fake_step_ms: float = _opt(0.0, "fake engine: simulated cost of one step, in ms")
    fake_pause_frames: int = _opt(
        0, "fake engine: predict end of turn after this many silent frames (0: never)"
    )
    kyutai_pause_threshold: float = _opt(
        0.5, "kyutai engine: report end of turn when the pause head's probability reaches this (0: off)"
    )
    kyutai_cuda_graphs: bool = _opt(True, "kyutai engine: replay each step as a CUDA graph (CUDA only)")
    kyutai_compile: bool = _opt(True, "kyutai engine: torch.compile moshi's fused layers (CUDA only)")
    cpu_threads: int = _opt(0, "whisper engine: CTranslate2 threads of the decoder (0: one per core)")
    whisper_interval_s: float = _opt(
        0.5, "whisper engine: re-decode the current utterance after this much new audio"
    )
    whisper_window_s: float = _opt(10.0, "whisper engine: longest audio decoded at once")
    whisper_silence_s: float = _opt(
        0.5, "whisper engine: silence that ends an utterance and sends its last words"
    )
    whisper_context_s: float = _opt(
        20.0, "whisper engine: audio the encoder sees, the window padded with silence (Whisper's own: 30)"
    )
    log_level: str = _opt("info", "logging level: debug, info, warning, error")
    log_format: str = _opt("text", "log line format: text (key=value) or json")

    def __post_init__(self) -> None:
        problems = [msg for ok, msg in self._checks() if not ok]
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    def _checks(self) -> Iterator[tuple[bool, str]]:
        yield 0 <= self.port <= 65535, f"port must be 0..65535, got {self.port}"
        dtypes = ("auto", "bfloat16", "float16", "float32")
        yield self.dtype in dtypes, f"dtype must be one of {dtypes}, got {self.dtype!r}"
        yield (
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"),
            (f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"),
        )
        yield self.slots is None or self.slots >= 1, f"slots must be >= 1, got {self.slots}"
        yield self.batch_wait_ms >= 0, "batch_wait_ms must be >= 0"
        yield self.idle_timeout_s > 0, "idle_timeout_s must be > 0"
        yield self.max_message_bytes >= 1024, "max_message_bytes must be >= 1024"
        yield self.max_upload_bytes >= 1024, "max_upload_bytes must be >= 1024"
        yield self.upload_wait_s >= 0, "upload_wait_s must be >= 0"
        yield 0 <= self.min_chunk_ms <= self.max_chunk_ms, "min_chunk_ms must be in 0..max_chunk_ms"
        yield self.max_backlog_s > 0, "max_backlog_s must be > 0"
        yield self.max_messages_per_s >= 0, "max_messages_per_s must be >= 0"
        yield self.max_session_s >= 0 and self.session_warning_s >= 0, "session limits must be >= 0"
        yield self.max_outbox_messages >= 1 and self.send_timeout_s > 0, "outbox limits must be positive"
        yield self.connect_rate_per_s >= 0 and self.connect_burst >= 1, "connect rate limits must be positive"
        yield self.drain_grace_s >= 0, "drain_grace_s must be >= 0"
        yield self.log_format in ("text", "json"), f"log_format must be text or json, got {self.log_format!r}"
        yield self.fake_delay_frames >= 0, "fake_delay_frames must be >= 0"
        yield self.fake_step_ms >= 0, "fake_step_ms must be >= 0"
        yield self.fake_pause_frames >= 0, "fake_pause_frames must be >= 0"
        yield 0 <= self.kyutai_pause_threshold <= 1, "kyutai_pause_threshold must be in 0..1"
        yield self.cpu_threads >= 0, "cpu_threads must be >= 0"
        yield self.whisper_interval_s > 0, "whisper_interval_s must be > 0"
        yield (
            self.whisper_window_s >= 2 * self.whisper_interval_s,
            "whisper_window_s must be at least twice whisper_interval_s",
        )
        yield self.whisper_silence_s > 0, "whisper_silence_s must be > 0"
        yield (
            self.whisper_window_s + 2 <= self.whisper_context_s <= 30,
            "whisper_context_s must be in whisper_window_s + 2 .. 30",
        )
        levels = ("debug", "info", "warning", "error")
        yield self.log_level in levels, f"log_level must be one of {levels}, got {self.log_level!r}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `STT_*` variables, then explicit overrides (CLI flags)."""
        return _load(cls, os.environ if environ is None else environ, overrides)


@dataclass(frozen=True)
class ClientSettings:
    """Settings of the command-line client (`stt transcribe`)."""

    url: str = _opt("ws://127.0.0.1:8000/v1/stream", "server WebSocket URL")
    api_key: str | None = _opt(None, "API key to send (as `Authorization: Bearer`)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientSettings:
        return _load(cls, os.environ if environ is None else environ, overrides)


MODAL_GPUS = (
    "T4",
    "L4",
    "A10",
    "A10G",
    "L40S",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "RTX-PRO-6000",
    "H100",
    "H100!",
    "H200",
    "B200",
    "B200+",
)
"""GPU types Modal accepts (https://modal.com/docs/guide/gpu), one per container: the engine
batches every stream on one device, so more GPUs per container would sit idle."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModalSettings:
    """The Modal deployment (deploy/modal_app.py): what each GPU container is and how Modal
    scales them. Read from `STT_MODAL_*` variables when `modal deploy` imports the app, and
    validated then, so a bad value fails before anything is built or billed."""

    env_prefix: ClassVar[str] = "STT_MODAL_"

    app: str = _opt("stt-server", "Modal app name (the URL is derived from it)")
    gpu: str = _opt("L40S", "GPU type of each container, one of MODAL_GPUS")
    model: str = _opt(
        "kyutai/stt-1b-en_fr", "hub checkpoint served; downloaded into the volume at /models/<model>"
    )
    volume: str = _opt("stt-models", "Modal Volume holding the weights (created if missing)")
    secret: str = _opt("stt-api-keys", "Modal Secret that sets STT_API_KEYS (or STT_API_KEYS_FILE)")
    slots: int = _opt(64, "engine slots (concurrent streams) per container")
    max_inputs: int | None = _opt(None, "streams one container accepts at most; default: slots")
    target_inputs: int = _opt(10, "streams per container the autoscaler aims at")
    min_containers: int = _opt(0, "containers kept warm even when idle (billed while up)")
    max_containers: int = _opt(4, "containers at most (caps the bill)")
    scaledown_window_s: int = _opt(300, "idle seconds before a container is stopped (2..3600)")
    timeout_s: int = _opt(3900, "longest request, i.e. stream, in seconds; above STT_MAX_SESSION_S")
    python: str = _opt("3.11", "Python version of the image")
    extras: str = _opt("kyutai", "comma-separated extras of this package installed in the image")

    def __post_init__(self) -> None:
        problems = [msg for ok, msg in self._checks() if not ok]
        if problems:
            raise ValueError("invalid Modal settings: " + "; ".join(problems))

    @property
    def concurrent_max(self) -> int:
        return self.slots if self.max_inputs is None else self.max_inputs

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(e.strip() for e in self.extras.split(",") if e.strip())

    @property
    def model_dir(self) -> str:
        """Where the checkpoint lives inside containers (the volume is mounted at /models)."""
        return f"{MODAL_MODELS_DIR}/{self.model}"

    def _checks(self) -> Iterator[tuple[bool, str]]:
        yield (
            self.gpu in MODAL_GPUS,
            f"STT_MODAL_GPU must be one of {', '.join(MODAL_GPUS)} (one GPU per container), got {self.gpu!r}",
        )
        for name in ("app", "volume", "secret"):
            value = getattr(self, name)
            yield bool(_NAME.match(value)), f"STT_MODAL_{name.upper()} is not a valid Modal name: {value!r}"
        yield bool(_HUB_ID.match(self.model)), f"STT_MODAL_MODEL must be owner/name, got {self.model!r}"
        yield self.slots >= 1, f"STT_MODAL_SLOTS must be >= 1, got {self.slots}"
        yield (
            1 <= self.concurrent_max <= self.slots,
            f"STT_MODAL_MAX_INPUTS must be in 1..slots ({self.slots}): streams beyond the engine's slots "
            f"would only be refused, got {self.concurrent_max}",
        )
        yield (
            1 <= self.target_inputs <= self.concurrent_max,
            f"STT_MODAL_TARGET_INPUTS must be in 1..max_inputs ({self.concurrent_max}), "
            f"got {self.target_inputs}",
        )
        yield self.min_containers >= 0, f"STT_MODAL_MIN_CONTAINERS must be >= 0, got {self.min_containers}"
        yield (
            self.max_containers >= 1 and self.min_containers <= self.max_containers,
            f"STT_MODAL_MAX_CONTAINERS must be >= 1 and >= min_containers ({self.min_containers}), "
            f"got {self.max_containers}",
        )
        yield (
            2 <= self.scaledown_window_s <= 3600,
            f"STT_MODAL_SCALEDOWN_WINDOW_S must be in 2..3600, got {self.scaledown_window_s}",
        )
        yield 60 <= self.timeout_s <= 86400, f"STT_MODAL_TIMEOUT_S must be in 60..86400, got {self.timeout_s}"
        python_ok = re.match(r"^3\.1[1-9]$", self.python) is not None
        yield python_ok, f"STT_MODAL_PYTHON must be 3.11 or later, got {self.python!r}"
        yield bool(self.extra_names), "STT_MODAL_EXTRAS must name at least one extra"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ModalSettings:
        return _load(cls, os.environ if environ is None else environ, overrides)

    def to_env(self) -> dict[str, str]:
        """`STT_MODAL_*` variables that rebuild these settings (containers import the app too)."""
        values = {option: getattr(self, option.name) for option in options(type(self))}
        return {option.env: str(value) for option, value in values.items() if value is not None}


MODAL_MODELS_DIR = "/models"
"""Mount point of the weights volume in Modal containers."""


@dataclass(frozen=True)
class Option:
    """A settings field as the CLI and docs see it."""

    name: str
    env: str
    type: type
    optional: bool
    default: Any
    help: str


_T = typing.TypeVar("_T")


def options(cls: type[Any]) -> list[Option]:
    """The fields of a settings class with their env names and value types."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = _unwrap(hints[f.name])
        prefix = getattr(cls, "env_prefix", ENV_PREFIX)
        out.append(Option(f.name, prefix + f.name.upper(), kind, optional, f.default, f.metadata["help"]))
    return out


def _unwrap(hint: Any) -> tuple[type, bool]:
    """`int | None` -> (int, True); `int` -> (int, False)."""
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _parse(option: Option, raw: str) -> Any:
    if option.optional and raw.strip().lower() in ("", "none", "auto"):
        return None
    if option.type is bool:
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{option.env} must be a boolean, got {raw!r}")
    try:
        return option.type(raw)
    except ValueError:
        raise ValueError(f"{option.env} must be {option.type.__name__}, got {raw!r}") from None


def _load(cls: type[_T], environ: Mapping[str, str], overrides: Mapping[str, Any]) -> _T:
    values: dict[str, Any] = {}
    for option in options(cls):
        if option.env in environ:
            values[option.name] = _parse(option, environ[option.env])
    unknown = set(overrides) - {o.name for o in options(cls)}
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)
