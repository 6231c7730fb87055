"""GET / serves the browser page and its files from the package: same origin only, no key
needed for the page itself, and every file it names is there (also in a built wheel)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stt.engine.fake.engine import FakeEngine
from stt.messages import ErrorCode
from stt.server import page
from tests.helpers import ROOT, app_client

STATIC = Path(str(files("stt.server").joinpath("static")))
FILES = sorted(p.name for p in STATIC.iterdir() if p.is_file())
KEY = "stt_page-key"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with app_client(FakeEngine(slots=2, delay_frames=1)) as c:
        yield c


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_page_is_served_at_the_root_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == page.CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in page.CONTENT_SECURITY_POLICY
    assert 'id="transcript"' in response.text


def test_every_file_the_page_names_is_served_from_this_server(client: TestClient) -> None:
    links = referenced(client.get("/").text)
    assert "/static/app.js" in links and "/static/style.css" in links
    for link in links:
        if link.startswith("data:"):
            continue
        assert link.startswith("/static/"), link
        response = client.get(link)
        assert response.status_code == 200, link
        assert response.headers["content-security-policy"] == page.CONTENT_SECURITY_POLICY


def test_javascript_modules_are_served_as_javascript_and_import_only_each_other(client: TestClient) -> None:
    scripts = [name for name in FILES if name.endswith(".js")]
    assert {"app.js", "worklet.js", "capture.js", "stream.js", "subtitles.js"} <= set(scripts)
    for name in scripts:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
        for target in re.findall(r'from "([^"]+)"', response.text):
            assert target.startswith("./") and target[2:] in FILES, (name, target)


@pytest.mark.parametrize("name", FILES)
def test_no_file_names_another_origin(name: str) -> None:
    text = (STATIC / name).read_text("utf-8")
    assert not re.search(r"\b(?:https?|wss?):/{2}", text), name


def test_a_missing_file_is_404(client: TestClient) -> None:
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/static/../page.py").status_code == 404


def test_with_keys_the_page_opens_without_one_and_the_api_still_needs_it() -> None:
    with app_client(FakeEngine(slots=1, delay_frames=1), api_keys=KEY) as client:
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/v1/status").status_code == 401
        assert client.get("/v1/status", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get("/static").status_code == 401  # only the files themselves are open


@pytest.mark.slow
def test_a_built_wheel_ships_every_static_file(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("stt_server-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"stt/server/static/{name}" for name in FILES} <= names


def test_the_page_has_plain_words_for_every_error_code() -> None:
    words = (STATIC / "errors.js").read_text("utf-8")
    for code in ErrorCode:
        assert re.search(rf"^\s+{code.value}: \"[A-Z]", words, re.MULTILINE), code
    for code in ("bad_request", "bad_audio"):  # the HTTP endpoint's own codes
        assert f"  {code}: " in words
