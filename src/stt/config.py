"""Settings: the only module that reads the environment.

`Settings` composes groups of settings, each a frozen dataclass declared beside the code that
uses it (see `stt.setting`): the engine choice, the server, the per-stream limits
(`stt.limits`), auth, logging and one options class per engine (in the engine's package).
Every field is a CLI flag and an environment variable: `--name` and `STT_NAME`, its public
name being the group's prefix plus the field name unless the field names itself; flags win
over the environment, which wins over the defaults (as in uvicorn). The flags, `--help`, the
README tables (`python -m stt.config` prints them), the one parser of their text and the
validation all come from these declarations.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stt.constants import HUB_ID
from stt.engine.fake.options import FakeOptions
from stt.engine.kyutai.options import KyutaiOptions
from stt.engine.whisper.options import WhisperOptions
from stt.limits import SessionLimits
from stt.setting import Checked, SettingsError, setting

ENV_PREFIX = "STT_"

_T = typing.TypeVar("_T")


class _FromEnvironment:
    @classmethod
    def from_env(cls: type[_T], environ: Mapping[str, str] | None = None, **overrides: Any) -> _T:
        """Defaults, then the environment's variables, then `overrides` (CLI flags), keyed by
        public name (`slots=8`, `max_backlog_s=1.0`, `whisper_window_s=4.0`)."""
        return _load(cls, os.environ if environ is None else environ, overrides)


@dataclass(frozen=True)
class EngineSettings(Checked):
    """Which engine serves, on what model, with how many streams batched per step."""

    name: str = setting("whisper", "engine to serve (see `stt engines`)", name="engine")
    model: str | None = setting(
        None, "model to load: a local directory, a mounted volume path or a hub id", unset="engine's own"
    )
    slots: int | None = setting(
        None,
        "concurrent streams (engine batch size); `auto`: the engine's own (whisper: the streams its "
        "measured decoder serves within `--whisper-latency-budget-s`)",
        unset="`auto`",
    )
    batch_wait_ms: float = setting(
        0.0, "after an idle period, wait this long for more streams' frames before a step"
    )

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.slots is None or self.slots >= 1, f"slots must be >= 1, got {self.slots}"
        yield self.batch_wait_ms >= 0, "batch_wait_ms must be >= 0"


@dataclass(frozen=True)
class ServerSettings(Checked):
    """Where the server listens, what an upload may be, how it drains on SIGTERM."""

    host: str = setting("127.0.0.1", "interface to listen on")
    port: int = setting(8000, "TCP port to listen on")
    max_upload_bytes: int = setting(200 << 20, "largest file accepted by `POST /v1/audio/transcriptions`")
    upload_wait_s: float = setting(30.0, "how long an upload waits for a free slot before 503")
    drain_grace_s: float = setting(30.0, "on SIGTERM, how long open streams may run before being flushed")

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield 0 <= self.port <= 65535, f"port must be 0..65535, got {self.port}"
        yield self.max_upload_bytes >= 1024, "max_upload_bytes must be >= 1024"
        yield self.upload_wait_s >= 0, "upload_wait_s must be >= 0"
        yield self.drain_grace_s >= 0, "drain_grace_s must be >= 0"


@dataclass(frozen=True)
class AuthSettings(Checked):
    """Who may connect, and how fast new streams may come."""

    api_keys: str | None = setting(None, "comma-separated API keys; auth is off when no keys are configured")
    api_keys_file: str | None = setting(
        None, "file of hashed API keys, one `[label] sha256:<hex>` per line (see `stt keys`)"
    )
    connect_rate_per_s: float = setting(
        10.0, "new streams per second allowed per API key (per client address without auth; 0: off)"
    )
    connect_burst: int = setting(100, "burst of new streams allowed above `connect_rate_per_s`")

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.connect_rate_per_s >= 0 and self.connect_burst >= 1, "connect rate limits must be positive"


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LogSettings(Checked):
    prefix: ClassVar[str] = "log_"

    level: str = setting("info", "logging level: debug, info, warning, error")
    format: str = setting("text", "log line format: text (key=value) or json, one line per event")

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield self.level in LOG_LEVELS, f"log_level must be one of {LOG_LEVELS}, got {self.level!r}"
        yield self.format in ("text", "json"), f"log_format must be text or json, got {self.format!r}"


@dataclass(frozen=True)
class Settings(Checked, _FromEnvironment):
    """Server settings. Construct with `Settings.from_env()`; every group validates itself."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    limits: SessionLimits = field(default_factory=SessionLimits)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    fake: FakeOptions = field(default_factory=FakeOptions)
    kyutai: KyutaiOptions = field(default_factory=KyutaiOptions)
    whisper: WhisperOptions = field(default_factory=WhisperOptions)


@dataclass(frozen=True)
class ClientSettings(Checked, _FromEnvironment):
    """Settings of the command-line clients (`stt transcribe`, `stt stress`)."""

    url: str = setting("ws://127.0.0.1:8000/v1/stream", "server WebSocket URL")
    api_key: str | None = setting(None, "API key to send (as `Authorization: Bearer`)")


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


@dataclass(frozen=True)
class ModalSettings(Checked, _FromEnvironment):
    """The Modal deployment (deploy/modal_app.py): what each GPU container is and how Modal
    scales them. Read from `STT_MODAL_*` variables when `modal deploy` imports the app, and
    validated then, so a bad value fails before anything is built or billed."""

    env_prefix: ClassVar[str] = "STT_MODAL_"
    what: ClassVar[str] = "Modal settings"

    app: str = setting("stt-server", "Modal app name (the URL is derived from it)")
    gpu: str = setting(
        "L40S", f"GPU of each container: {', '.join(f'`{g}`' for g in MODAL_GPUS)} (one per container)"
    )
    model: str = setting("kyutai/stt-1b-en_fr", "checkpoint served, from `/models/<model>` in the Volume")
    volume: str = setting("stt-models", "Volume holding the weights (created if missing)")
    secret: str = setting("stt-api-keys", "Secret that sets `STT_API_KEYS` (or `STT_API_KEYS_FILE`)")
    slots: int = setting(64, "engine slots (streams) per container; `STT_SLOTS` in the container")
    max_inputs: int | None = setting(
        None, "streams per container at most (`@modal.concurrent(max_inputs)`)", unset="slots"
    )
    target_inputs: int = setting(10, "streams per container the autoscaler aims at (`target_inputs`)")
    min_containers: int = setting(0, "containers kept running when idle (billed; no cold starts)")
    max_containers: int = setting(4, "containers at most (caps the bill and the total streams)")
    scaledown_window_s: int = setting(300, "idle seconds before a container stops (2 to 3600)")
    timeout_s: int = setting(
        3900,
        f"longest request, i.e. stream; must exceed `STT_MAX_SESSION_S` ({SessionLimits.max_session_s:g})",
    )
    python: str = setting("3.11", "Python of the image")
    extras: str = setting("kyutai", "extras of this package installed in the image")

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

    def checks(self) -> Iterator[tuple[bool, str]]:
        yield (
            self.gpu in MODAL_GPUS,
            f"STT_MODAL_GPU must be one of {', '.join(MODAL_GPUS)} (one GPU per container), got {self.gpu!r}",
        )
        for name in ("app", "volume", "secret"):
            value = getattr(self, name)
            yield bool(_NAME.match(value)), f"STT_MODAL_{name.upper()} is not a valid Modal name: {value!r}"
        yield bool(HUB_ID.match(self.model)), f"STT_MODAL_MODEL must be owner/name, got {self.model!r}"
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

    def to_env(self) -> dict[str, str]:
        """`STT_MODAL_*` variables that rebuild these settings (containers import the app too)."""
        values = {option.env: _value(self, option.path) for option in options(type(self))}
        return {env: str(value) for env, value in values.items() if value is not None}


MODAL_MODELS_DIR = "/models"
"""Mount point of the weights volume in Modal containers."""


@dataclass(frozen=True)
class Option:
    """A setting as the CLI, the environment and the docs see it."""

    name: str
    """Public name: the flag is `--name` with dashes, the override key is `name`."""
    env: str
    type: type
    optional: bool
    default: Any
    help: str
    unset: str
    """What a None default means, in the docs."""
    path: tuple[str, ...]
    """Attributes from the settings object to the value (`("limits", "max_backlog_s")`)."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def options(cls: type[Any]) -> list[Option]:
    """The settings of a settings class, its groups' included, in declaration order."""
    found = list(_walk(cls, getattr(cls, "env_prefix", ENV_PREFIX), ()))
    names = [o.name for o in found]
    if len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}: two settings share a public name")
    return found


def _walk(cls: type[Any], env_prefix: str, path: tuple[str, ...]) -> Iterator[Option]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_group(hints[f.name]):
            yield from _walk(hints[f.name], env_prefix, (*path, f.name))
            continue
        kind, optional = _unwrap(hints[f.name])
        name = f.metadata["name"] or getattr(cls, "prefix", "") + f.name
        help, unset = f.metadata["help"], f.metadata["unset"]
        yield Option(name, env_prefix + name.upper(), kind, optional, f.default, help, unset, (*path, f.name))


def _is_group(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _unwrap(hint: Any) -> tuple[type, bool]:
    """`int | None` -> (int, True); `int` -> (int, False)."""
    if isinstance(hint, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _value(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse(option: Option, raw: str) -> Any:
    """A setting's value from its text, for flags and environment alike; a ValueError says
    what the text must be (the caller names the flag or the variable)."""
    if option.optional and raw.strip().lower() in ("", "none", "auto"):
        return None
    if option.type is bool:
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f"must be a boolean ({', '.join(_TRUE)} or {', '.join(_FALSE)}), got {raw!r}")
    kind: Any = option.type
    if issubclass(kind, enum.Enum):
        members = {str(member.value): member for member in kind}
        if raw.strip().lower() not in members:
            raise ValueError(f"must be one of {', '.join(members)}, got {raw!r}")
        return members[raw.strip().lower()]
    try:
        return option.type(raw)
    except ValueError:
        raise ValueError(f"must be {option.type.__name__}, got {raw!r}") from None


def _load(cls: type[_T], environ: Mapping[str, str], overrides: Mapping[str, Any]) -> _T:
    by_name = {o.name: o for o in options(cls)}
    unknown = set(overrides) - set(by_name)
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    values: dict[tuple[str, ...], Any] = {}
    problems = []
    for option in by_name.values():
        if option.env in environ:
            try:
                values[option.path] = parse(option, environ[option.env])
            except ValueError as exc:
                problems.append(f"{option.env} {exc}")
    for name, value in overrides.items():
        option = by_name[name]
        if value is None and not option.optional:
            problems.append(f"{name} needs a value")
        values[option.path] = value
    if problems:
        raise SettingsError(problems, getattr(cls, "what", "settings"))
    return _make(cls, values, ())


def _make(cls: type[_T], values: Mapping[tuple[str, ...], Any], path: tuple[str, ...]) -> _T:
    """Build `cls` and its groups from `values`; every group's problems are reported at once."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = (*path, f.name)
        if _is_group(hints[f.name]):
            try:
                kwargs[f.name] = _make(hints[f.name], values, key)
            except SettingsError as exc:
                problems.extend(exc.problems)
        elif key in values:
            kwargs[f.name] = values[key]
    if problems:
        raise SettingsError(problems, getattr(cls, "what", "settings"))
    return cls(**kwargs)


# -- the README's tables ---------------------------------------------------------------------


def markdown_table(cls: type[Any], *, flags: bool = True) -> str:
    """The table of `cls`'s settings as the README shows it (tests/test_docs.py checks it)."""
    head = ["flag", "environment", "default", "meaning"] if flags else ["environment", "default", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in options(cls):
        cells = [f"`{o.flag}`"] * flags + [f"`{o.env}`", _shown_default(o), o.help]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _shown_default(option: Option) -> str:
    value = option.default
    if value is None:
        return option.unset
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


README_TABLES = {
    "server": (Settings, True),
    "client": (ClientSettings, True),
    "modal": (ModalSettings, False),
}
"""The README's generated tables: name -> (settings class, whether it has flags)."""


if __name__ == "__main__":  # python -m stt.config: the tables to paste into the README
    for name, (cls, with_flags) in README_TABLES.items():
        sys.stdout.write(f"{name} settings:\n\n{markdown_table(cls, flags=with_flags)}\n")
