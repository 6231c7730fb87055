"""The browser page in a real Chromium (Debian's, driven by Selenium; see tests/chromium.py).

With the whisper engine the words of a shared sample, played by Chromium's fake microphone,
appear in #transcript (the `/?autostart=1` contract), and a chosen file gets its transcript;
with the fake engine: the error shown when the server is full, the API key flow, the
subtitle files (the same as the server's), and a phone-width layout.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from websockets.sync.client import connect

from stt.constants import SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.engine.interface import WordEvent
from stt.transcript_format import cut_cues, to_srt, to_vtt
from tests.chromium import (
    chromium,
    fake_microphone_wav,
    foreign_requests,
    page_errors,
    require_chromium,
    wait_for,
)
from tests.helpers import ROOT, SAMPLES, clip, live_server, manifest, serve_process, wer

CLIP = "en-01"
FILE_CLIP = "en-02"
SCREENSHOT = ROOT / "docs" / "browser-page.png"
"""Rewritten by the whisper test when STT_UPDATE_SCREENSHOT=1 (then commit it)."""
KEY = "stt_browser-key"
WHISPER_WAIT_S = (
    180.0  # words from Whisper on a shared 2-core machine; the wait ends as soon as they are there
)


@pytest.fixture(scope="module")
def whisper_port() -> Iterator[int]:
    require_chromium()  # before loading a model for nothing
    with serve_process("--engine", "whisper") as (_, port):
        yield port


def tone_microphone(tmp_path: Path, text: str) -> Path:
    """A fake microphone that says `text` in the fake engine's tone code. The code has one
    symbol per 80 ms frame and the page's frames start wherever the capture does, so the
    words come back garbled (a letter or two each), but they come: enough for the page's
    mechanics. Exact words are Whisper's test; exact samples are the worklet test's."""
    return fake_microphone_wav(encode_text(text), SAMPLE_RATE, tmp_path / "tones.wav", lead_s=0.5, tail_s=1.5)


def word_texts(driver: WebDriver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#transcript .word")]


def words_at_least(count: int) -> Any:
    return lambda d: int(d.find_element(By.ID, "transcript").get_attribute("data-words") or 0) >= count


def visible(element_id: str) -> Any:
    return lambda d: d.find_element(By.ID, element_id).is_displayed()


def check_clean(driver: WebDriver, origin: str, *, expected: str | None = None) -> None:
    """No console error but the `expected` one (a refused request the page handles), and
    nothing loaded from another origin."""
    assert [e for e in page_errors(driver) if expected is None or expected not in e] == []
    assert foreign_requests(driver, origin) == []


@pytest.mark.slow
def test_whisper_the_samples_words_appear_in_the_transcript(whisper_port: int, tmp_path: Path) -> None:
    origin = f"http://127.0.0.1:{whisper_port}"
    reference = manifest()[CLIP]["ref_text"].split()
    wav = fake_microphone_wav(clip(CLIP), SAMPLE_RATE, tmp_path / "mic.wav", lead_s=1.0, tail_s=3.0)
    with chromium(microphone=wav) as driver:
        driver.get(f"{origin}/?autostart=1")
        wait_for(driver, words_at_least(len(reference)), WHISPER_WAIT_S, "the sample's words in #transcript")
        heard = word_texts(driver)[: len(reference)]
        assert wer(CLIP, " ".join(heard)) <= 0.5, heard
        first = driver.find_element(By.ID, "latency-first")
        assert first.get_attribute("data-ms"), "the page measured no first-word latency"
        latencies = json.loads(first.get_attribute("data-all") or "[]")
        print(
            f"\nfirst-word latency measured in the page (ms, per utterance): {latencies}; {os.getloadavg()=}"
        )
        assert driver.find_element(By.ID, "conn").text == "connected"
        assert driver.find_element(By.ID, "engine").text == "whisper"
        # The open utterance is highlighted until it ends (an end of turn, or a gap in the words).
        utterances = driver.find_elements(By.CSS_SELECTOR, "#transcript .utterance")
        classes = [u.get_attribute("class") for u in utterances]
        print(f"utterances: {classes}")
        assert all(c == "utterance current" for c in classes[-1:]) or "turn" in classes[-1]
        assert "current" not in " ".join(classes[:-1])
        backgrounds = {
            "current" in c: u.value_of_css_property("background-color")
            for c, u in zip(classes, utterances, strict=True)
        }
        if len(backgrounds) == 2:
            assert backgrounds[True] != backgrounds[False]
        word = driver.find_element(By.CSS_SELECTOR, "#transcript .word")
        assert word.get_attribute("title").endswith(" s")  # its time on hover
        shot = SCREENSHOT if os.environ.get("STT_UPDATE_SCREENSHOT") == "1" else tmp_path / "page.png"
        driver.save_screenshot(str(shot))

        driver.find_element(By.ID, "stop").click()
        wait_for(driver, visible("final"), 60, "the Final after Stop")
        assert driver.find_element(By.ID, "final").text.startswith("Final (complete)")
        assert driver.find_element(By.ID, "conn").text == "stream ended"
        assert not driver.find_elements(By.CSS_SELECTOR, "#transcript .utterance.current")
        assert wer(CLIP, " ".join(word_texts(driver)[: len(reference)])) <= 0.5
        check_clean(driver, origin)


@pytest.mark.slow
def test_whisper_a_chosen_file_gets_its_transcript(whisper_port: int) -> None:
    origin = f"http://127.0.0.1:{whisper_port}"
    path = SAMPLES / manifest()[FILE_CLIP]["wav24k_path"]
    with chromium() as driver:
        driver.get(origin)
        driver.find_element(By.ID, "file-input").send_keys(str(path))
        wait_for(driver, visible("final"), WHISPER_WAIT_S, "the file's transcript")
        assert path.name in driver.find_element(By.ID, "source").text
        assert wer(FILE_CLIP, " ".join(word_texts(driver))) <= 0.5
        assert driver.find_element(By.ID, "upload-state").text == f"Transcribed {path.name}."
        check_clean(driver, origin)


TONE_TEXT = "hello from the browser page"


def test_words_arrive_in_utterances_and_stop_shows_the_final(tmp_path: Path) -> None:
    with (
        live_server(FakeEngine(slots=2, delay_frames=1)) as server,
        chromium(microphone=tone_microphone(tmp_path, TONE_TEXT)) as driver,
    ):
        driver.get(f"{server.url}/?autostart=1")
        wait_for(driver, words_at_least(3), 30, "the tone-coded words")
        first = driver.find_element(By.CSS_SELECTOR, "#transcript .word")
        assert re.fullmatch(r"\d+\.\d\d s \u2013 \d+\.\d\d s", first.get_attribute("title") or "")
        assert driver.find_element(By.ID, "latency-first").get_attribute("data-ms")
        # The file loops with 1.5 s of silence: the next words open a new, highlighted utterance.
        wait_for(
            driver,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#transcript .utterance")) >= 2,
            30,
            "a second utterance",
        )
        current = driver.find_element(By.CSS_SELECTOR, "#transcript .utterance.current")
        finished = driver.find_element(By.CSS_SELECTOR, "#transcript .utterance:not(.current)")
        assert current.value_of_css_property("background-color") != finished.value_of_css_property(
            "background-color"
        )
        assert len(driver.find_elements(By.CSS_SELECTOR, "#transcript .utterance.current")) == 1

        driver.find_element(By.ID, "stop").click()
        wait_for(driver, visible("final"), 30, "the Final")
        assert re.fullmatch(
            r"Final \(complete\): \d+ words, \d+\.\d s of audio\.", driver.find_element(By.ID, "final").text
        )
        final_words = int(driver.find_element(By.ID, "final").text.split(": ")[1].split()[0])
        assert final_words == len(word_texts(driver)) >= 3  # the Final's words replaced the live ones
        assert not driver.find_elements(By.CSS_SELECTOR, "#transcript .utterance.current")
        assert (
            driver.find_element(By.ID, "start").is_enabled()
            and not driver.find_element(By.ID, "stop").is_enabled()
        )
        check_clean(driver, server.url)


def test_a_dropped_connection_says_so(tmp_path: Path) -> None:
    with chromium(microphone=tone_microphone(tmp_path, TONE_TEXT)) as driver:
        with live_server(FakeEngine(slots=2, delay_frames=1)) as server:
            driver.get(f"{server.url}/?autostart=1")
            wait_for(driver, words_at_least(1), 30, "a running stream")
        wait_for(driver, visible("error"), 30, "the dropped connection")
        error = driver.find_element(By.ID, "error")
        print(error.text, error.get_attribute("data-code"))
        assert error.get_attribute("data-code") == "dropped"
        assert "The connection to the server dropped" in error.text
        assert driver.find_element(By.ID, "conn").text == "disconnected"


def test_a_full_server_says_try_again_later() -> None:
    with live_server(FakeEngine(slots=1, delay_frames=1)) as server, chromium() as driver:
        with connect(server.ws_url) as occupant:
            assert json.loads(occupant.recv())["type"] == "Ready"
            driver.get(f"{server.url}/?autostart=1")
            wait_for(driver, visible("error"), 30, "the over-capacity error")
            error = driver.find_element(By.ID, "error")
            assert error.get_attribute("data-code") == "over_capacity"
            assert "The server is full" in error.text and "Try again later" in error.text
            assert driver.find_element(By.ID, "slots").text == "0 of 1"
            assert driver.find_element(By.ID, "start").is_enabled()
        check_clean(driver, server.url)


def test_with_a_key_the_page_asks_for_it_once_and_says_check_the_key(tmp_path: Path) -> None:
    wav = tone_microphone(tmp_path, "with the key")
    with (
        live_server(FakeEngine(slots=2, delay_frames=1), api_keys=KEY) as server,
        chromium(microphone=wav) as driver,
    ):
        driver.get(f"{server.url}/?autostart=1")
        wait_for(driver, visible("key-form"), 30, "the key form")
        driver.find_element(By.ID, "key").send_keys("wrong")
        driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait_for(driver, visible("error"), 30, "the refused key")
        assert "check the key" in driver.find_element(By.ID, "error").text
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait_for(
            driver, lambda d: d.find_element(By.ID, "conn").text == "connected", 30, "the stream with the key"
        )
        assert driver.find_element(By.ID, "engine").text == "fake"
        assert not driver.find_element(By.ID, "error").is_displayed()
        wait_for(driver, words_at_least(3), 30, "words with the key")
        driver.refresh()  # the tab keeps the key: no second question
        wait_for(
            driver,
            lambda d: d.find_element(By.ID, "conn").text == "connected",
            30,
            "reconnected with the kept key",
        )
        assert not driver.find_element(By.ID, "key-form").is_displayed()
        check_clean(
            driver,
            server.url,
            expected="/v1/status - Failed to load resource: the server responded with a status of 401",
        )


def subtitle_words() -> list[WordEvent]:
    """Words that cut cues by every rule: a sentence end, two full lines, a pause, a long cue;
    with text WebVTT escapes and times that round half-way."""
    words = [
        WordEvent(t, a, b)
        for t, a, b in [("Hello", 0.0, 0.3), ("there,", 0.4, 0.8), ("it", 0.9, 1.2), ("is.", 1.3, 1.7)]
    ]
    t = 1.8
    for i in range(16):  # about 100 characters without a pause: two lines, then a new cue
        words.append(WordEvent(f"word{i:02d}", t, t + 0.2))
        t += 0.25
    t += 1.0  # a pause
    for text in ("<ok>", "&", "then"):
        words.append(WordEvent(text, t, t + 0.3))
        t += 0.35
    for i in range(8):  # slow words: longer than 6 s on screen
        words.append(WordEvent(f"slow{i}", t, t + 0.9))
        t += 0.95
    words.append(WordEvent("half", 40.0005, 40.0015))
    return words


def test_the_pages_subtitles_are_the_servers(tmp_path: Path) -> None:
    events = subtitle_words()
    words = [{"text": w.text, "start_s": w.start_s, "end_s": w.end_s} for w in events]
    with live_server(FakeEngine(slots=1, delay_frames=1)) as server, chromium() as driver:
        driver.get(server.url)
        made = driver.execute_async_script(
            """const [words, done] = arguments;
            import('/static/subtitles.js').then((m) =>
              done({srt: m.toSrt(words), vtt: m.toVtt(words), txt: m.toText(words)}));""",
            words,
        )
        cues = cut_cues(events)
        assert made["srt"] == to_srt(cues)
        assert made["vtt"] == to_vtt(cues)
        assert made["txt"] == " ".join(w.text for w in events) + "\n"
        assert len(cues) >= 6 and any(len(cue.lines(42)) == 2 for cue in cues)
        assert "&lt;ok&gt; &amp;" in made["vtt"]
        check_clean(driver, server.url)


def test_phone_width_fits_and_every_button_has_a_name() -> None:
    with (
        live_server(FakeEngine(slots=1, delay_frames=1)) as server,
        chromium(width=390, height=844) as driver,
    ):
        driver.get(server.url)
        wait_for(driver, lambda d: d.find_element(By.ID, "slots").text == "1 of 1", 30, "the status line")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        buttons = [b for b in driver.find_elements(By.TAG_NAME, "button") if b.is_displayed()]
        assert len(buttons) >= 6  # the key form's button is hidden: the server has no keys
        for button in buttons:
            assert button.accessible_name.strip(), button.get_attribute("id")
        for control in ("language", "file-input", "level"):
            assert driver.find_element(By.ID, control).accessible_name.strip(), control
        driver.find_element(By.TAG_NAME, "body").send_keys("\t")  # keyboard: Tab reaches the controls
        assert driver.switch_to.active_element.get_attribute("id") == "language"
        check_clean(driver, server.url)


RESAMPLE_SCRIPT = """
const [frequency, done] = arguments;
const context = new OfflineAudioContext(1, 48000, 48000);  // 1 s at 48 kHz, rendered at once
context.audioWorklet.addModule('/static/worklet.js').then(() => {
  const node = new AudioWorkletNode(context, 'pcm-capture', {
    processorOptions: {outRate: 24000, frameSamples: 1920}, numberOfOutputs: 1});
  const frames = [];
  node.port.onmessage = (event) => {
    frames.push(event.data);
    if (frames.length === 12) {  // 1 s at 24 kHz: 12 full frames
      const first = Array.from(new Int16Array(frames[1].pcm));
      done({sizes: frames.map((f) => f.samples), rms: frames.map((f) => f.rms), first});
    }
  };
  const tone = new OscillatorNode(context, {frequency});
  const gain = new GainNode(context, {gain: 0.5});
  tone.connect(gain).connect(node).connect(context.destination);
  tone.start();
  context.startRendering();
});
"""


@pytest.mark.parametrize(("frequency", "passes"), [(1000, True), (15000, False)])
def test_the_worklet_resamples_48_khz_to_24_khz_frames_without_aliasing(frequency: int, passes: bool) -> None:
    """A 48 kHz tone through the page's worklet: 1920-sample frames; a 1 kHz tone keeps its
    level and frequency, one above the 12 kHz Nyquist rate of the stream is filtered out."""
    with live_server(FakeEngine(slots=1, delay_frames=1)) as server, chromium() as driver:
        driver.get(server.url)
        made = driver.execute_async_script(RESAMPLE_SCRIPT, frequency)
        check_clean(driver, server.url)
    assert made["sizes"] == [1920] * 12
    level = float(np.median(made["rms"][1:12]))
    if passes:
        assert level == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
        spectrum = np.abs(np.fft.rfft(np.asarray(made["first"], dtype=np.float64)))
        assert np.argmax(spectrum) * SAMPLE_RATE / 1920 == pytest.approx(frequency, abs=SAMPLE_RATE / 1920)
    else:
        assert level < 0.01  # at least 30 dB down
