"""Engine names -> how to build them and whether they can load here.

Builders import their engine module lazily, so listing engines never loads a model library.
A missing dependency or weight is reported with what to do about it, never papered over by
falling back to another engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stt.config import Settings
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


ENGINES: dict[str, EngineSpec] = {
    "fake": EngineSpec("fake", "deterministic tone-code engine for tests and load", _build_fake, _probe_fake),
    "kyutai": EngineSpec(
        "kyutai", "Kyutai streaming STT (moshi): Mimi + LM, batched per frame", _build_kyutai, _probe_kyutai
    ),
    "whisper": EngineSpec(
        "whisper", "embedded CPU Whisper (faster-whisper), English and French", _build_whisper, _probe_whisper
    ),
}


def get_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineUnavailableError(
            f"unknown engine {name!r}; available: {', '.join(sorted(ENGINES))}"
        ) from None


def build_engine(settings: Settings) -> Engine:
    """Build the configured engine or raise EngineUnavailableError saying why not."""
    spec = get_spec(settings.engine.name)
    availability = spec.probe(settings)
    if not availability.ok:
        raise EngineUnavailableError(f"engine {spec.name!r} cannot load here: {availability.detail}")
    return spec.build(settings)


def probe_all(settings: Settings) -> list[tuple[EngineSpec, Availability]]:
    return [(spec, spec.probe(settings)) for spec in ENGINES.values()]
