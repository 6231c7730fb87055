"""Engine names -> how to build them and whether they can load here.

Builders import their engine module lazily, so listing engines never loads a model library.
A missing dependency or weight is reported with what to do about it, never papered over by
falling back to another engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from stt.config import Settings
from stt.constants import HUB_ID
from stt.engine.interface import Engine


class EngineUnavailableError(RuntimeError):
    """The engine cannot be built here; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class Availability:
    ok: bool
    detail: str


@dataclass(frozen=True)
class EngineSpec:
    name: str
    summary: str
    build: Callable[[Settings], Engine]
    probe: Callable[[Settings], Availability]
    model_id: Callable[[str | None], str]
    """The served model's public name (`GET /v1/models`) for a `--model` value (None: the
    engine's default): a hub id as it is, a local directory by its last part."""


def _build_fake(settings: Settings) -> Engine:
    from stt.engine.fake.engine import build

    return build(settings.fake, slots=settings.engine.slots)


def _probe_fake(settings: Settings) -> Availability:
    return Availability(True, "built in; decodes the tone code of `stt tones`, not speech")


def _build_kyutai(settings: Settings) -> Engine:
    from stt.engine.kyutai.checkpoint import CheckpointError
    from stt.engine.kyutai.engine import build

    try:
        return build(settings.engine.model, settings.kyutai, slots=settings.engine.slots)
    except CheckpointError as exc:
        raise EngineUnavailableError(f"engine 'kyutai' cannot load: {exc}") from exc


def _probe_kyutai(settings: Settings) -> Availability:
    from stt.engine.kyutai.checkpoint import probe

    return Availability(*probe(settings.engine.model, settings.kyutai.pause_threshold))


def _build_whisper(settings: Settings) -> Engine:
    from stt.engine.whisper.engine import build
    from stt.engine.whisper.weights import WeightsError

    model = settings.engine.model
    try:
        return build(model, settings.whisper, slots=settings.engine.slots)
    except WeightsError as exc:
        raise EngineUnavailableError(f"engine 'whisper' cannot load here: {exc}") from exc
    except Exception as exc:  # a hub download without network, a broken directory...
        raise EngineUnavailableError(
            f"engine 'whisper' could not load model {model!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _probe_whisper(settings: Settings) -> Availability:
    from stt.engine.whisper.engine import probe

    ok, detail = probe(settings.engine.model)
    return Availability(ok, detail)


def _public_name(model: str) -> str:
    """A hub id as it is; a local directory by its last part (no server paths in answers)."""
    if HUB_ID.match(model):
        return model
    return PurePath(model.rstrip("/")).name or model


def _fake_model(model: str | None) -> str:
    return "fake"  # no weights: the tone code is the model


def _kyutai_model(model: str | None) -> str:
    from stt.engine.kyutai.checkpoint import DEFAULT_MODEL

    return _public_name(model or DEFAULT_MODEL)


def _whisper_model(model: str | None) -> str:
    from stt.engine.whisper.weights import DEFAULT_MODEL, PACKAGED

    source = model or DEFAULT_MODEL
    return f"whisper-{source}" if source in PACKAGED else _public_name(source)


ENGINES: dict[str, EngineSpec] = {
    "fake": EngineSpec(
        "fake", "deterministic tone-code engine for tests and load", _build_fake, _probe_fake, _fake_model
    ),
    "kyutai": EngineSpec(
        "kyutai",
        "Kyutai streaming STT (moshi): Mimi + LM, batched per frame",
        _build_kyutai,
        _probe_kyutai,
        _kyutai_model,
    ),
    "whisper": EngineSpec(
        "whisper",
        "embedded CPU Whisper (faster-whisper), English and French",
        _build_whisper,
        _probe_whisper,
        _whisper_model,
    ),
}


def get_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineUnavailableError(
            f"unknown engine {name!r}; available: {', '.join(sorted(ENGINES))}"
        ) from None


def served_model(settings: Settings, engine: str) -> str:
    """The public name of the model `engine` serves under `settings`. An engine handed to the
    server ready-made (tests, embedders) that is not the configured one is named by itself."""
    spec = ENGINES.get(engine)
    if spec is None or engine != settings.engine.name:
        return engine
    return spec.model_id(settings.engine.model)


def build_engine(settings: Settings) -> Engine:
    """Build the configured engine or raise EngineUnavailableError saying why not."""
    spec = get_spec(settings.engine.name)
    availability = spec.probe(settings)
    if not availability.ok:
        raise EngineUnavailableError(f"engine {spec.name!r} cannot load here: {availability.detail}")
    return spec.build(settings)


def probe_all(settings: Settings) -> list[tuple[EngineSpec, Availability]]:
    return [(spec, spec.probe(settings)) for spec in ENGINES.values()]
