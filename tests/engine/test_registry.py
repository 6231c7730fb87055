import pytest

from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.options import DEFAULT_SLOTS
from stt.engine.registry import EngineUnavailableError, build_engine, probe_all, served_model
from tests.helpers import make_settings


def test_builds_the_fake_with_settings() -> None:
    engine = build_engine(make_settings(engine="fake", slots=3, fake_delay_frames=2))
    assert isinstance(engine, FakeEngine)
    assert (engine.info.max_batch, engine.info.delay_frames) == (3, 2)
    assert build_engine(make_settings(engine="fake")).info.max_batch == DEFAULT_SLOTS  # the engine's own


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(EngineUnavailableError, match="unknown engine 'nope'; available: fake"):
        build_engine(make_settings(engine="nope"))


def test_probe_lists_every_engine_with_a_reason() -> None:
    rows = probe_all(make_settings())
    assert next(spec.name for spec, _ in rows) == "fake"
    assert all(availability.detail for _, availability in rows)


@pytest.mark.parametrize(
    ("engine", "model", "served"),
    [
        ("whisper", None, "whisper-base"),
        ("whisper", "tiny.en", "whisper-tiny.en"),
        ("whisper", "Systran/faster-whisper-small", "Systran/faster-whisper-small"),
        ("whisper", "/models/my-whisper/", "my-whisper"),
        ("kyutai", None, "kyutai/stt-1b-en_fr"),
        ("kyutai", "./checkpoints/stt-2.6b", "stt-2.6b"),
        ("fake", None, "fake"),
    ],
)
def test_the_served_model_is_named_without_local_paths(engine: str, model: str | None, served: str) -> None:
    assert served_model(make_settings(engine=engine, model=model), engine) == served


def test_an_engine_handed_in_ready_made_is_named_by_itself() -> None:
    assert served_model(make_settings(engine="whisper"), "fake") == "fake"
