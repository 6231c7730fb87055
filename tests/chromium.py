"""Debian's Chromium driven by Selenium, for the browser page's tests.

The browser and its driver are the system's (`apt-get install chromium chromium-driver`, as
`.ci/run` does): both paths are given to Selenium, so Selenium Manager never looks anything
up or downloads a browser. Without them the tests skip, except in CI (`CI` set) or when
`STT_REQUIRE_BROWSER=1` (set by `.ci/run`), where they fail instead.

Microphone audio is a WAV file played by Chromium's fake capture device, in a loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_VARIABLES = ("STT_REQUIRE_BROWSER", "CI")
"""Either set (to anything but empty or 0): a missing browser fails the tests instead of skipping them."""


def browser_required() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false") for name in REQUIRE_VARIABLES)


def require_chromium() -> None:
    """Skip (on a developer's machine) or fail (in CI) when Chromium or its driver is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (see .ci/run)"
    if browser_required():
        pytest.fail(message)
    pytest.skip(message)


def fake_microphone_wav(
    audio: npt.NDArray[np.float32], rate: int, path: Path, *, lead_s: float, tail_s: float
) -> Path:
    """`audio` between silences as a 16-bit PCM WAV (the format Chromium's fake device plays)."""
    silence = (
        np.zeros(round(lead_s * rate), dtype=np.float32),
        np.zeros(round(tail_s * rate), dtype=np.float32),
    )
    soundfile.write(path, np.concatenate([silence[0], audio, silence[1]]), rate, subtype="PCM_16")
    return path


@contextmanager
def chromium(
    *, microphone: Path | None = None, width: int = 1000, height: int = 1000, downloads: Path | None = None
) -> Iterator[WebDriver]:
    """Headless Chromium; `microphone`: a WAV the fake capture device plays (granted at once)."""
    require_chromium()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        # Checks run without a person: let the AudioContext start without a click.
        "--autoplay-policy=no-user-gesture-required",
        # Nothing of Chromium's own may reach the network either.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(flag)
    if microphone is not None:
        options.add_argument(f"--use-file-for-fake-audio-capture={microphone}")
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout_s: float, what: str) -> Any:
    """Wait for a DOM condition (WebDriverWait polls the page); the failure says what was awaited."""
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition, message=what)


def page_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged to its console (uncaught exceptions, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def foreign_requests(driver: WebDriver, origin: str) -> list[str]:
    """Every resource the page loaded from anywhere but `origin`."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    return [name for name in names if not name.startswith(origin) and not name.startswith("data:")]
