import pytest

from stt.config import ClientSettings, Settings, options


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.engine == "whisper"
    assert settings.port == 8000
    assert settings.slots is None


def test_environment_then_overrides() -> None:
    env = {"STT_PORT": "9000", "STT_SLOTS": "8", "STT_IDLE_TIMEOUT_S": "2.5", "UNRELATED": "x"}
    settings = Settings.from_env(env)
    assert (settings.port, settings.slots, settings.idle_timeout_s) == (9000, 8, 2.5)
    assert Settings.from_env(env, port=9100).port == 9100
    assert Settings.from_env({"STT_SLOTS": "auto"}).slots is None


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"STT_PORT": "eighty"}, "STT_PORT must be int"),
        ({"STT_PORT": "70000"}, "port must be"),
        ({"STT_SLOTS": "0"}, "slots must be >= 1"),
        ({"STT_LOG_LEVEL": "loud"}, "log_level must be one of"),
        ({"STT_IDLE_TIMEOUT_S": "0"}, "idle_timeout_s must be > 0"),
        ({"STT_DTYPE": "int4"}, "dtype must be one of"),
        ({"STT_DEVICE": "tpu"}, "device must be auto, cpu, cuda"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Settings.from_env(env)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(TypeError, match="unknown settings"):
        Settings.from_env({}, colour="blue")


def test_every_field_has_help_and_an_env_name() -> None:
    for option in options(Settings) + options(ClientSettings):
        assert option.help
        assert option.env == "STT_" + option.name.upper()


def test_client_settings() -> None:
    assert ClientSettings.from_env({"STT_URL": "ws://h:1/v1/stream"}).url == "ws://h:1/v1/stream"


def test_modal_settings_read_their_own_prefix_and_round_trip() -> None:
    from stt.config import ModalSettings

    spec = ModalSettings.from_env({"STT_MODAL_GPU": "A100-80GB", "STT_MODAL_SLOTS": "32", "STT_SLOTS": "8"})
    assert (spec.gpu, spec.slots, spec.concurrent_max, spec.target_inputs) == ("A100-80GB", 32, 32, 10)
    assert spec.model_dir == "/models/kyutai/stt-1b-en_fr"
    assert ModalSettings.from_env(spec.to_env()) == spec
    assert [o.env for o in options(ModalSettings)][:2] == ["STT_MODAL_APP", "STT_MODAL_GPU"]
    with pytest.raises(ValueError, match="invalid Modal settings: STT_MODAL_TARGET_INPUTS"):
        ModalSettings(slots=8, target_inputs=9)
