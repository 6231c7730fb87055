import subprocess
import sys

import pytest

from stt.config import ClientSettings, ModalSettings, Settings, options
from stt.engine.whisper.options import WhisperOptions
from stt.limits import SessionLimits
from stt.setting import SettingsError

PUBLIC_NAMES = [
    "engine",
    "model",
    "slots",
    "batch_wait_ms",
    "host",
    "port",
    "max_upload_bytes",
    "upload_wait_s",
    "drain_grace_s",
    "idle_timeout_s",
    "max_message_bytes",
    "min_chunk_ms",
    "max_chunk_ms",
    "max_backlog_s",
    "max_messages_per_s",
    "max_session_s",
    "session_warning_s",
    "max_outbox_messages",
    "send_timeout_s",
    "api_keys",
    "api_keys_file",
    "connect_rate_per_s",
    "connect_burst",
    "log_level",
    "log_format",
    "fake_delay_frames",
    "fake_step_ms",
    "fake_pause_frames",
    "device",
    "dtype",
    "kyutai_pause_threshold",
    "kyutai_context_s",
    "kyutai_cuda_graphs",
    "kyutai_compile",
    "cpu_threads",
    "whisper_decode_threads",
    "whisper_decode_workers",
    "whisper_interval_s",
    "whisper_window_s",
    "whisper_silence_s",
    "whisper_context_s",
    "whisper_batch",
    "whisper_beam",
    "whisper_beam_size",
    "whisper_fallback",
    "whisper_latency_budget_s",
    "whisper_pad_s",
]
"""The names deployments and docs use (flags `--max-backlog-s`, variables `STT_MAX_BACKLOG_S`):
grouping the settings must never rename one."""


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.engine.name == "whisper"
    assert settings.server.port == 8000
    assert settings.engine.slots is None
    assert settings.limits.max_backlog_s == 10.0


def test_environment_then_overrides() -> None:
    env = {"STT_PORT": "9000", "STT_SLOTS": "8", "STT_IDLE_TIMEOUT_S": "2.5", "UNRELATED": "x"}
    settings = Settings.from_env(env)
    assert (settings.server.port, settings.engine.slots, settings.limits.idle_timeout_s) == (9000, 8, 2.5)
    assert Settings.from_env(env, port=9100).server.port == 9100
    assert Settings.from_env(env, slots=None).engine.slots is None  # an explicit None overrides too
    assert Settings.from_env({"STT_SLOTS": "auto"}).engine.slots is None


def test_settings_land_in_their_groups() -> None:
    env = {
        "STT_MAX_BACKLOG_S": "3",
        "STT_WHISPER_WINDOW_S": "4",
        "STT_DEVICE": "cpu",
        "STT_LOG_FORMAT": "json",
    }
    settings = Settings.from_env(env, fake_step_ms=2.0, kyutai_compile=False, api_keys="k")
    assert settings.limits == SessionLimits(max_backlog_s=3.0)
    assert settings.whisper == WhisperOptions(window_s=4.0)
    assert (settings.kyutai.device, settings.kyutai.compile, settings.kyutai.cuda_graphs) == (
        "cpu",
        False,
        True,
    )
    assert (settings.fake.step_ms, settings.log.format, settings.auth.api_keys) == (2.0, "json", "k")


def test_public_names_are_unchanged() -> None:
    assert sorted(o.name for o in options(Settings)) == sorted(PUBLIC_NAMES)
    for option in options(Settings) + options(ClientSettings):
        assert option.help
        assert option.env == "STT_" + option.name.upper()
        assert option.flag == "--" + option.name.replace("_", "-")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"STT_PORT": "eighty"}, "STT_PORT must be int, got 'eighty'"),
        ({"STT_PORT": "70000"}, "port must be"),
        ({"STT_SLOTS": "0"}, "slots must be >= 1"),
        ({"STT_LOG_LEVEL": "loud"}, "log_level must be one of"),
        ({"STT_IDLE_TIMEOUT_S": "0"}, "idle_timeout_s must be > 0"),
        ({"STT_DTYPE": "int4"}, "dtype must be one of"),
        ({"STT_DEVICE": "tpu"}, "device must be auto, cpu, cuda"),
        ({"STT_KYUTAI_COMPILE": "maybe"}, "STT_KYUTAI_COMPILE must be a boolean"),
        ({"STT_KYUTAI_CUDA_GRAPHS": ""}, "STT_KYUTAI_CUDA_GRAPHS must be a boolean"),
        ({"STT_WHISPER_CONTEXT_S": "31"}, r"whisper_context_s must be in whisper_window_s \+ 2 .. 30"),
        ({"STT_WHISPER_WINDOW_S": "0.6"}, "whisper_window_s must be at least twice whisper_interval_s"),
        (
            {"STT_WHISPER_LATENCY_BUDGET_S": "0.2"},
            "whisper_latency_budget_s must be at least whisper_interval_s",
        ),
        ({"STT_WHISPER_BATCH": "0"}, "whisper_batch must be >= 1"),
        ({"STT_WHISPER_BEAM": "often"}, "STT_WHISPER_BEAM must be one of none, final, spare, all, got"),
        ({"STT_WHISPER_BEAM_SIZE": "1"}, "whisper_beam_size must be >= 2"),
        ({"STT_WHISPER_PAD_S": "0.5"}, "whisper_pad_s must be 0 or >= 1"),
        ({"STT_MAX_BACKLOG_S": "0"}, "max_backlog_s must be > 0"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Settings.from_env(env)


def test_a_choice_reads_any_case() -> None:
    from stt.engine.whisper.options import Decodes

    whisper = Settings.from_env({"STT_WHISPER_BEAM": " Spare", "STT_WHISPER_FALLBACK": "none"}).whisper
    assert (whisper.beam, whisper.fallback) == (Decodes.SPARE, Decodes.NONE)


@pytest.mark.parametrize("raw", ["1", "true", "Yes", " on "])
def test_booleans_read_true(raw: str) -> None:
    assert Settings.from_env(
        {"STT_KYUTAI_COMPILE": "false", "STT_KYUTAI_CUDA_GRAPHS": raw}
    ).kyutai.cuda_graphs


def test_every_problem_is_reported_at_once() -> None:
    env = {"STT_PORT": "70000", "STT_WHISPER_CONTEXT_S": "40", "STT_FAKE_STEP_MS": "-1"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert len(caught.value.problems) == 3, caught.value.problems
    assert str(caught.value).startswith("invalid settings: ")


def test_each_group_validates_itself_when_made_directly() -> None:
    with pytest.raises(SettingsError, match="whisper_context_s"):
        WhisperOptions(window_s=20.0)
    with pytest.raises(SettingsError, match="min_chunk_ms"):
        SessionLimits(min_chunk_ms=50, max_chunk_ms=40)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(TypeError, match="unknown settings"):
        Settings.from_env({}, colour="blue")


def test_a_required_setting_cannot_be_overridden_with_none() -> None:
    with pytest.raises(SettingsError, match="port needs a value"):
        Settings.from_env({}, port=None)


def test_reading_settings_imports_no_model_library() -> None:
    code = (
        "import sys, stt.config; libraries = ('torch', 'moshi', 'faster_whisper', 'ctranslate2', 'soxr'); "
        "print(sorted(m for m in libraries if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_client_settings() -> None:
    assert ClientSettings.from_env({"STT_URL": "ws://h:1/v1/stream"}).url == "ws://h:1/v1/stream"


def test_modal_settings_read_their_own_prefix_and_round_trip() -> None:
    spec = ModalSettings.from_env({"STT_MODAL_GPU": "A100-80GB", "STT_MODAL_SLOTS": "32", "STT_SLOTS": "8"})
    assert (spec.gpu, spec.slots, spec.concurrent_max, spec.target_inputs) == ("A100-80GB", 32, 32, 10)
    assert spec.model_dir == "/models/kyutai/stt-1b-en_fr"
    assert ModalSettings.from_env(spec.to_env()) == spec
    assert [o.env for o in options(ModalSettings)][:2] == ["STT_MODAL_APP", "STT_MODAL_GPU"]
    with pytest.raises(ValueError, match="invalid Modal settings: STT_MODAL_TARGET_INPUTS"):
        ModalSettings(slots=8, target_inputs=9)
    with pytest.raises(ValueError, match="STT_MODAL_MODEL must be owner/name"):
        ModalSettings(model="no-owner")
