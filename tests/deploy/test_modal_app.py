"""deploy/modal_app.py, offline: no Modal account, no GPU, no weights.

The module is imported in-process as `modal deploy` would import it. What Modal recorded from
the decorators is read back through the SDK's private structures (modal is pinned exactly, so a
change there fails here first), and the container's enter hooks are run on the fake engine.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stt.audio import float32_to_pcm16
from stt.config import ModalSettings
from stt.engine.fake.tones import encode_text

modal = pytest.importorskip("modal", reason="the deploy extra (modal) is not installed")
from modal._partial_function import _PartialFunctionFlags  # noqa: E402
from modal._utils.async_utils import synchronizer  # noqa: E402

pytestmark = pytest.mark.skipif(not modal.is_local(), reason="deploy/ is not shipped into Modal containers")

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "deploy" / "modal_app.py"
KEY = "stt_modal-test-key"
EXTRAS = "kyutai"
"""The image's extras in these tests: the default, the Kyutai engine's."""

Loader = Callable[..., ModuleType]


@pytest.fixture
def load_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Loader]:
    """Import the module afresh under a given environment, without Modal credentials."""
    for name in list(os.environ):
        if name.startswith(("STT_", "MODAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "no-modal.toml"))

    def load(**env: str) -> ModuleType:
        monkeypatch.setenv("STT_MODAL_EXTRAS", EXTRAS)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        spec = importlib.util.spec_from_file_location("modal_app_under_test", MODULE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    yield load


def recorded(cls: Any) -> dict[str, Any]:
    """The settings Modal will send for the class's service function."""
    function = synchronizer._translate_in(cls._get_class_service_function())
    return dict(inspect.getclosurevars(function._load).nonlocals) | {"spec": function._spec}


def hooks(cls: Any) -> dict[str, Any]:
    return {name: synchronizer._translate_in(p) for name, p in cls._get_partial_functions().items()}


def test_imports_without_credentials_and_without_heavy_modules(load_app: Loader, tmp_path: Path) -> None:
    app = load_app()
    assert ModalSettings(extras=EXTRAS) == app.SPEC
    assert app.app.name == "stt-server"
    # A fresh interpreter, as `modal deploy` runs it: no engine, torch or web framework loaded.
    probe = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('modal_app', {str(MODULE)!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['modal_app'] = m; "
        "spec.loader.exec_module(m); "
        "print(sorted(n for n in ('torch', 'moshi', 'fastapi', 'stt.server.app', 'stt.engine.registry') "
        "if n in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "MODAL_"))}
    env.update(STT_MODAL_EXTRAS=EXTRAS, HOME=str(tmp_path), MODAL_CONFIG_PATH=str(tmp_path / "none.toml"))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_class_carries_the_configured_gpu_scaling_and_snapshot_settings(load_app: Loader) -> None:
    app = load_app(
        STT_MODAL_GPU="H100",
        STT_MODAL_SLOTS="48",
        STT_MODAL_TARGET_INPUTS="12",
        STT_MODAL_MIN_CONTAINERS="1",
        STT_MODAL_MAX_CONTAINERS="7",
        STT_MODAL_SCALEDOWN_WINDOW_S="120",
        STT_MODAL_TIMEOUT_S="7300",
        STT_MAX_SESSION_S="7200",
    )
    got = recorded(app.Server)
    assert got["gpu"] == "H100" and got["spec"].gpus == "H100"
    assert (got["max_concurrent_inputs"], got["target_concurrent_inputs_int"]) == (48, 12)
    assert (got["min_containers"], got["max_containers"]) == (1, 7)
    assert (got["scaledown_window"], got["timeout"]) == (120, 7300)
    assert got["enable_memory_snapshot"] is True
    assert got["experimental_options"] == {"enable_gpu_snapshot": "True"}  # Modal sends strings


def test_defaults_target_ten_streams_and_take_the_engine_slots_as_max(load_app: Loader) -> None:
    got = recorded(load_app().Server)
    assert (got["gpu"], got["max_concurrent_inputs"], got["target_concurrent_inputs_int"]) == ("L40S", 64, 10)
    assert (got["scaledown_window"], got["timeout"], got["max_containers"]) == (300, 3900, 4)


def test_weights_volume_at_models_and_the_api_key_secret(load_app: Loader) -> None:
    app = load_app(STT_MODAL_VOLUME="weights", STT_MODAL_SECRET="my-keys")
    spec = recorded(app.Server)["spec"]
    assert list(spec.volumes) == ["/models"]
    volume = spec.volumes["/models"]
    assert volume is synchronizer._translate_in(app.volume)
    assert inspect.getclosurevars(volume._load).nonlocals | {"create_options": None} == {
        "name": "weights",
        "create_if_missing": True,
        "create_options": None,
        "version": None,
    }
    assert "my-keys" in repr(spec.secrets[0])
    download = synchronizer._translate_in(app.download)._spec
    assert download.volumes == {"/models": volume}
    assert download.gpus is None  # fetching weights needs no GPU


def test_enter_hooks_load_before_the_snapshot_and_serve_after_it(load_app: Loader) -> None:
    found = {name: _PartialFunctionFlags(h.flags) for name, h in hooks(load_app().Server).items()}
    assert found == {
        "load": _PartialFunctionFlags.ENTER_PRE_SNAPSHOT,
        "start": _PartialFunctionFlags.ENTER_POST_SNAPSHOT,
        "web": _PartialFunctionFlags.WEB_INTERFACE,
    }
    web = hooks(load_app().Server)["web"]
    assert "ASGI" in str(web.params.webhook_config)


def test_container_environment_serves_kyutai_from_the_volume_without_the_hub(load_app: Loader) -> None:
    app = load_app(STT_API_KEYS="leak", STT_MAX_SESSION_S="600", STT_PORT="1")
    env = app.ENV
    assert env["STT_ENGINE"] == "kyutai"
    assert (env["STT_DEVICE"], env["STT_DTYPE"]) == ("cuda", "bfloat16")
    assert env["STT_MODEL"] == "/models/kyutai/stt-1b-en_fr"
    assert env["STT_SLOTS"] == "64"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["STT_MAX_SESSION_S"] == "600"  # server settings set at deploy time travel along
    assert "STT_API_KEYS" not in env and "STT_PORT" not in env  # keys only via the Secret
    assert ModalSettings.from_env({k: v for k, v in env.items() if v is not None}) == app.SPEC


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"STT_MODAL_TARGET_INPUTS": "80"}, r"TARGET_INPUTS must be in 1\.\.max_inputs \(64\)"),
        ({"STT_MODAL_MAX_INPUTS": "65"}, r"MAX_INPUTS must be in 1\.\.slots \(64\)"),
        ({"STT_MODAL_GPU": "K80"}, "STT_MODAL_GPU must be one of T4, L4"),
        ({"STT_MODAL_GPU": "H100:2"}, "one GPU per container"),
        ({"STT_MODAL_TIMEOUT_S": "0"}, "TIMEOUT_S must be in 60..86400"),
        ({"STT_MODAL_SCALEDOWN_WINDOW_S": "1"}, "SCALEDOWN_WINDOW_S must be in 2..3600"),
        ({"STT_MODAL_MIN_CONTAINERS": "5"}, "MAX_CONTAINERS must be >= 1 and >= min_containers"),
        ({"STT_MODAL_MODEL": "stt-1b"}, "STT_MODAL_MODEL must be owner/name"),
        ({"STT_MODAL_EXTRAS": "gpu"}, "no extra 'gpu'"),
        ({"STT_MAX_SESSION_S": "0"}, "STT_MAX_SESSION_S .* below STT_MODAL_TIMEOUT_S"),
        ({"STT_DTYPE": "int4"}, "dtype must be one of"),
    ],
)
def test_invalid_configuration_fails_at_import(load_app: Loader, env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_app(**env)


def test_image_packages_come_from_the_project_definition(load_app: Loader, tmp_path: Path) -> None:
    app = load_app()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy==2.4.6"]\n'
        '[project.optional-dependencies]\nkyutai = ["torch==2.13.0", "einops==0.8.1"]\n'
        '[tool.stt]\nno-deps = ["moshi==0.2.13"]\n'
    )
    found = app.project_requirements(pyproject, ("kyutai",))
    assert found.packages == ("numpy==2.4.6", "torch==2.13.0", "einops==0.8.1")
    assert found.no_deps == ("moshi==0.2.13",)
    with pytest.raises(ValueError, match=r"no extra 'cuda' .*it has: kyutai"):
        app.project_requirements(pyproject, ("cuda",))
    # The real module read the real pyproject: the pinned runtime list, not a copy of it.
    assert "fastapi==0.165.0" in app.REQUIREMENTS.packages
    assert app.REQUIREMENTS.no_deps == ("moshi==0.2.13",)


def image_layers(image: Any) -> list[list[str]]:
    """The Dockerfile commands of an image and its bases, oldest first."""
    layers = []
    current = synchronizer._translate_in(image)
    while current is not None:
        closure = inspect.getclosurevars(current._load).nonlocals
        if "mount" in closure:  # an add_local_* layer: files mounted at start, no commands
            current = closure["base_image"]
            continue
        if closure["dockerfile_function"] is not None:
            layers.append(closure["dockerfile_function"]("2025.06").commands)
        current = (closure["base_images"] or {}).get("base")
    return layers[::-1]


def test_the_image_installs_the_pinned_project_then_moshi_without_its_dependencies(load_app: Loader) -> None:
    app = load_app(STT_MODAL_PYTHON="3.12")
    layers = image_layers(app.base_image)
    assert layers[0][0].startswith("FROM python:3.12")
    assert layers[1] == [
        "FROM base",
        "RUN python -m pip install " + " ".join(sorted(app.REQUIREMENTS.packages)),
    ]
    assert layers[2] == ["FROM base", "RUN python -m pip install moshi==0.2.13 --no-deps"]
    served = recorded(app.Server)["spec"].image
    assert served is synchronizer._translate_in(app.image)
    assert image_layers(app.image) == layers
    assert synchronizer._translate_in(app.image)._added_python_source_set == frozenset({"stt"})


def test_default_image_installs_the_kyutai_extra() -> None:
    assert ModalSettings().extra_names == ("kyutai",)


def test_missing_weights_fail_with_the_download_command(load_app: Loader, tmp_path: Path) -> None:
    app = load_app()
    with pytest.raises(
        RuntimeError, match=r"modal run deploy/modal_app\.py::download --model kyutai/stt-1b-en_fr"
    ):
        app.require_weights(tmp_path, app.SPEC)
    (tmp_path / "config.json").write_text("{}")
    app.require_weights(tmp_path, app.SPEC)


def run_container(app: ModuleType, monkeypatch: pytest.MonkeyPatch, **secret: str) -> Any:
    """What a container does: its environment, then load (snap=True), start (snap=False), web."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the hooks configure logging
    monkeypatch.setattr(root, "level", root.level)
    for name, value in {**app.ENV, **secret}.items():
        monkeypatch.setenv(name, value)
    found = hooks(app.Server)
    server = app.Server._get_user_cls()()
    found["load"].raw_f(server)
    found["start"].raw_f(server)
    return found["web"].raw_f(server)


def test_the_container_serves_the_app_behind_the_secrets_key(
    load_app: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    app = load_app(STT_ENGINE="fake", STT_MODAL_SLOTS="4", STT_MODAL_TARGET_INPUTS="2")
    web = run_container(app, monkeypatch, STT_API_KEYS=KEY)
    with TestClient(web) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"ready": True, "slots_used": 0, "slots_total": 4}
        assert client.get("/v1/status").status_code == 401
        status = client.get("/v1/status", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert (status["engine"], status["slots_total"]) == ("fake", 4)
        with client.websocket_connect(f"/v1/stream?token={KEY}") as ws:
            assert ws.receive_json()["type"] == "Ready"
            ws.send_bytes(float32_to_pcm16(encode_text("modal")))
            ws.send_text(json.dumps({"type": "CloseStream"}))
            while (message := ws.receive_json())["type"] != "Final":
                pass
            assert message["transcript"] == "modal"


def test_the_container_refuses_to_serve_without_keys(
    load_app: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_app(STT_ENGINE="fake", STT_MODAL_SLOTS="4", STT_MODAL_TARGET_INPUTS="2")
    with pytest.raises(RuntimeError, match="Modal Secret 'stt-api-keys' must set STT_API_KEYS"):
        run_container(app, monkeypatch)


def test_the_container_refuses_to_load_without_weights(
    load_app: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_app()
    with pytest.raises(RuntimeError, match="no checkpoint at /models/kyutai/stt-1b-en_fr"):
        run_container(app, monkeypatch, STT_API_KEYS=KEY)
