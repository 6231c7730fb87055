"""The Modal deployment: GPU containers serving `stt.server.app.create_app`, scaled by Modal.

    modal run deploy/modal_app.py::download --model kyutai/stt-1b-en_fr   # weights -> Volume
    modal deploy deploy/modal_app.py                                      # the endpoint
    modal run deploy/modal_app.py::gpu_tests                              # pytest on a GPU

Everything comes from `stt.config.ModalSettings` (`STT_MODAL_*`), validated at import, so a
bad value fails before anything is built or billed. The server itself is configured as
everywhere else (`STT_*`): the container gets the engine defaults below plus any `STT_*`
set where `modal deploy` runs; API keys come only from the Modal Secret.

Importing this module needs no Modal credentials and builds nothing heavy (tests import it):
the engine and the web app are made in the container's enter hooks.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modal

from stt.config import MODAL_MODELS_DIR, ModalSettings, Settings, options

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REMOTE_PROJECT = "/root/project"

SERVER_DEFAULTS = {
    "STT_ENGINE": "kyutai",
    "STT_DEVICE": "cuda",
    "STT_DTYPE": "bfloat16",
    "STT_LOG_FORMAT": "json",
}
"""Server settings of a GPU container unless `STT_*` says otherwise where `modal deploy` runs."""

NOT_FORWARDED = frozenset(
    {"STT_API_KEYS", "STT_API_KEYS_FILE", "STT_HOST", "STT_PORT", "STT_MODEL", "STT_SLOTS"}
)
"""Keys only ever come from the Secret (never baked into the app's definition); host and port
mean nothing behind Modal's proxy; model and slots follow from the Modal settings."""

WEIGHTLESS_ENGINES = frozenset({"fake"})


@dataclass(frozen=True)
class ProjectRequirements:
    """What the image installs, read from the project's own pyproject.toml."""

    packages: tuple[str, ...]
    """[project.dependencies] plus the chosen extras, exactly as pinned there."""
    no_deps: tuple[str, ...]
    """[tool.stt] no-deps: packages whose declared dependencies conflict with ours (moshi)."""


def project_requirements(pyproject: Path, extras: tuple[str, ...]) -> ProjectRequirements:
    """The image's packages from pyproject.toml: one list of dependencies, not a second copy."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    available = project.get("optional-dependencies", {})
    missing = [name for name in extras if name not in available]
    if missing:
        raise ValueError(
            f"{pyproject.name} has no extra {', '.join(map(repr, missing))} "
            f"(it has: {', '.join(sorted(available)) or 'none'}); set STT_MODAL_EXTRAS"
        )
    packages = [*project.get("dependencies", [])]
    for name in extras:
        packages.extend(available[name])
    no_deps = data.get("tool", {}).get("stt", {}).get("no-deps", [])
    return ProjectRequirements(tuple(packages), tuple(no_deps))


def container_env(spec: ModalSettings, environ: Mapping[str, str]) -> dict[str, str | None]:
    """Environment of every container: server settings and the Modal settings themselves
    (containers import this module too and must rebuild the same objects)."""
    server_names = {option.env for option in options(Settings)}
    forwarded = {k: v for k, v in environ.items() if k in server_names and k not in NOT_FORWARDED}
    env = {**SERVER_DEFAULTS, **forwarded, "STT_MODEL": spec.model_dir, "STT_SLOTS": str(spec.slots)}
    settings = Settings.from_env(env)  # a bad STT_* value fails here, at deploy time
    if settings.limits.max_session_s == 0 or settings.limits.max_session_s >= spec.timeout_s:
        raise ValueError(
            f"STT_MAX_SESSION_S ({settings.limits.max_session_s:g}) must be set below STT_MODAL_TIMEOUT_S "
            f"({spec.timeout_s}): Modal cuts a request at its timeout, without the stream's Final"
        )
    # Never fetch weights from the hub at start-up: they come from the Volume or not at all.
    return {**env, "HF_HUB_OFFLINE": "1", **spec.to_env()}


def require_weights(model_dir: Path, spec: ModalSettings) -> None:
    """Fail with what to run when the checkpoint is not in the Volume."""
    if not (model_dir / "config.json").is_file():
        raise RuntimeError(
            f"no checkpoint at {model_dir} (Volume {spec.volume!r}): download it first with "
            f"`modal run deploy/modal_app.py::download --model {spec.model}`"
        )


def require_auth(settings: Settings, spec: ModalSettings) -> None:
    """A public URL is never served without keys."""
    if not (settings.auth.api_keys or settings.auth.api_keys_file):
        raise RuntimeError(
            f"no API keys: the Modal Secret {spec.secret!r} must set STT_API_KEYS "
            f"(`modal secret create {spec.secret} STT_API_KEYS=$(stt keys new)`)"
        )


def dependencies_image(spec: ModalSettings, requirements: ProjectRequirements) -> modal.Image:
    """Debian + the project's pinned dependencies (PyPI's Linux torch wheel is the CUDA build),
    then moshi without its dependencies (it caps numpy and torch below our pins)."""
    image = modal.Image.debian_slim(python_version=spec.python).pip_install(*requirements.packages)
    if requirements.no_deps:
        image = image.pip_install(*requirements.no_deps, extra_options="--no-deps")
    return image


SPEC = ModalSettings.from_env()
REQUIREMENTS = (
    project_requirements(PYPROJECT, SPEC.extra_names) if modal.is_local() else ProjectRequirements((), ())
)
ENV = container_env(SPEC, os.environ)

app = modal.App(SPEC.app)
volume = modal.Volume.from_name(SPEC.volume, create_if_missing=True)
base_image = dependencies_image(SPEC, REQUIREMENTS)
# The package source is mounted at container start (Modal allows no build step after it), so a
# code change redeploys in seconds without rebuilding the dependency layers.
image = base_image.add_local_python_source("stt")


@app.cls(
    image=image,
    gpu=SPEC.gpu,
    volumes={MODAL_MODELS_DIR: volume},
    secrets=[modal.Secret.from_name(SPEC.secret)],
    env=ENV,
    min_containers=SPEC.min_containers,
    max_containers=SPEC.max_containers,
    scaledown_window=SPEC.scaledown_window_s,
    timeout=SPEC.timeout_s,
    enable_memory_snapshot=True,
    experimental_options={"enable_gpu_snapshot": True},
)
@modal.concurrent(max_inputs=SPEC.concurrent_max, target_inputs=SPEC.target_inputs)
class Server:
    """One GPU, one engine with `slots` streams, the same app as `stt serve`."""

    @modal.enter(snap=True)
    def load(self) -> None:
        """Load and warm the engine: the weights and GPU state go into the snapshot, so a cold
        start restores them instead of loading again."""
        from stt.engine.base import warm_up
        from stt.engine.registry import build_engine
        from stt.logs import configure_logging

        settings = Settings.from_env()
        configure_logging(settings.log.level, settings.log.format)
        if settings.engine.name not in WEIGHTLESS_ENGINES:
            require_weights(Path(SPEC.model_dir), SPEC)
        self.engine = build_engine(settings)
        warm_up(self.engine)

    @modal.enter(snap=False)
    def start(self) -> None:
        """After every start or restore: the API keys (a rotated Secret takes effect without
        a new snapshot, and keys never sit in one) and the app, whose lifespan starts the
        scheduler's thread and event-loop tasks, which a snapshot cannot carry."""
        from stt.logs import configure_logging
        from stt.server.app import create_app

        settings = Settings.from_env()
        configure_logging(settings.log.level, settings.log.format)  # stderr as restored
        require_auth(settings, SPEC)
        self.web_app = create_app(settings, engine=self.engine)

    @modal.asgi_app()
    def web(self) -> Any:
        return self.web_app


@app.function(image=image, volumes={MODAL_MODELS_DIR: volume}, env={**SPEC.to_env()}, timeout=1800)
def download(model: str = SPEC.model) -> None:
    """Fetch a checkpoint from the hub into the Volume (the only place that reaches the hub)."""
    from huggingface_hub import snapshot_download

    target = ModalSettings(model=model).model_dir  # validates the id
    snapshot_download(repo_id=model, local_dir=target)
    volume.commit()
    files = sorted(p.name for p in Path(target).iterdir() if p.is_file())
    print(f"{model} -> Volume {SPEC.volume!r} at {target}: {', '.join(files)}")


DEV = project_requirements(PYPROJECT, ("dev",)).packages if modal.is_local() else ()
test_image = (
    base_image.pip_install(*DEV)
    .add_local_python_source("stt")
    .add_local_dir(ROOT / "tests", f"{REMOTE_PROJECT}/tests")
    .add_local_file(PYPROJECT, f"{REMOTE_PROJECT}/pyproject.toml")
)
TEST_ENV = {
    **SPEC.to_env(),
    "STT_TEST_MODEL_DIR": SPEC.model_dir,
    "HF_HUB_OFFLINE": "1",
    "PYTHONPATH": "/root",  # where the mounted package is, for the tests' `python -m stt.cli`
}
"""GPU integration tests read the checkpoint's directory from STT_TEST_MODEL_DIR and skip without it."""


@app.function(
    image=test_image, gpu=SPEC.gpu, volumes={MODAL_MODELS_DIR: volume}, env={**TEST_ENV}, timeout=1800
)
def gpu_tests(pytest_args: str = "tests -q") -> None:
    """The whole test suite in a GPU container, with the checkpoint from the Volume."""
    import shlex

    import pytest

    os.chdir(REMOTE_PROJECT)
    code = pytest.main(shlex.split(pytest_args))
    if code != 0:
        raise SystemExit(f"pytest failed with exit code {int(code)}")
