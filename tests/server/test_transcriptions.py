"""`POST /v1/audio/transcriptions` through the official `openai` SDK against the production
server (tone-coded files and the fake engine: exact transcripts and times, fast). Whisper's
own answer is checked in tests/protocols/test_real_clients.py."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import httpx2
import numpy as np
import openai
import pytest
import soundfile
from openai import OpenAI
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent
from websockets.sync.client import connect

from stt.constants import SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.engine.interface import StepInput, StepOutput
from tests.fakes import FailingEngine, RecordingEngine
from tests.helpers import LiveServer, live_server, tone_file

TEXT = "hello there general kenobi"
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server(FakeEngine(slots=4, delay_frames=3), max_upload_bytes=LIMIT) as live:
        yield live


def sdk(server: LiveServer) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="-", max_retries=0)


def phrases_file(*phrases: str, pause_s: float = 2.0) -> bytes:
    """Tone-coded phrases with `pause_s` of silence between them, as a WAV file."""
    pause = np.zeros(round(pause_s * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    for phrase in phrases:
        parts += [encode_text(phrase), pause]
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate(parts[:-1]), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_json_is_the_default_format(server: LiveServer) -> None:
    data = tone_file(TEXT)
    result = sdk(server).audio.transcriptions.create(model="whisper-1", file=("a.wav", data))
    assert result.text == TEXT
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(len(encode_text(TEXT)) / SAMPLE_RATE, abs=1e-3)


def test_text_is_a_plain_body(server: LiveServer) -> None:
    client = sdk(server)
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", tone_file(TEXT)), response_format="text"
    )
    assert text == TEXT + "\n"


def test_srt_and_vtt_cut_cues_at_pauses(server: LiveServer) -> None:
    # One 80 ms frame per letter and one of silence after each word; the 2 s pause cuts.
    data = phrases_file("first phrase", "second one")
    client = sdk(server)
    srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", data), response_format="srt")
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", data), response_format="vtt")
    first, second = "first phrase\n\n", "second one\n\n"
    assert srt == f"1\n00:00:00,000 --> 00:00:00,960\n{first}2\n00:00:03,040 --> 00:00:03,840\n{second}"
    assert vtt == f"WEBVTT\n\n00:00:00.000 --> 00:00:00.960\n{first}00:00:03.040 --> 00:00:03.840\n{second}"


def test_verbose_json_has_segments_and_words_when_asked(server: LiveServer) -> None:
    data = phrases_file("first phrase", "second one")
    client = sdk(server)
    plain = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", data), response_format="verbose_json", language="EN"
    )
    assert plain.text == "first phrase second one" and plain.language == "en"
    assert plain.duration == pytest.approx(3.92, abs=1e-3)
    assert plain.segments is not None and plain.words is None
    assert [(s.id, s.text, s.start, s.end) for s in plain.segments] == [
        (0, "first phrase", 0.0, 0.96),
        (1, "second one", 3.04, 3.84),
    ]
    both = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", data),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        prompt="ignored: the engines take no prompt",
        temperature=0.2,
    )
    assert both.words is not None and both.segments is not None
    assert [(w.word, w.start, w.end) for w in both.words] == [
        ("first", 0.0, 0.4),
        ("phrase", 0.48, 0.96),
        ("second", 3.04, 3.52),
        ("one", 3.6, 3.84),
    ]
    words_only = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", data),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words == both.words and words_only.segments == both.segments


def test_other_rates_channels_and_containers(server: LiveServer) -> None:
    samples = encode_text("resampled stereo flac")
    stereo = np.stack([samples, samples], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, stereo, SAMPLE_RATE, format="FLAC")
    client = sdk(server)
    assert client.audio.transcriptions.create(model="x", file=("a.flac", buffer.getvalue())).text == (
        "resampled stereo flac"
    )
    assert client.audio.transcriptions.create(
        model="x", file=("a.wav", tone_file("sixteen", rate=16_000))
    ).text == ("sixteen")


def error_of(call: pytest.ExceptionInfo[openai.APIStatusError]) -> tuple[int, str]:
    body = call.value.body
    assert isinstance(body, dict) and body["message"], body
    return call.value.status_code, str(body["code"])


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"file": ("a.wav", b"not audio at all" * 64)}, "bad_audio"),
        ({"file": ("a.wav", b"")}, "bad_audio"),
        ({"language": "de"}, "bad_request"),
        ({"response_format": "xml"}, "bad_request"),
        ({"response_format": "srt", "stream": True}, "bad_request"),
        ({"timestamp_granularities": ["sentence"]}, "bad_request"),
        ({"temperature": 3.0}, "bad_request"),
    ],
)
def test_bad_requests_raise_bad_request_error(
    server: LiveServer, kwargs: dict[str, object], code: str
) -> None:
    asked: dict[str, object] = {"model": "whisper-1", "file": ("a.wav", tone_file("ok"))} | kwargs
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(server).audio.transcriptions.create(**asked)  # type: ignore[call-overload]
    assert error_of(raised) == (400, code)


def test_too_large_is_413(server: LiveServer) -> None:
    big = np.zeros(LIMIT // 2 + SAMPLE_RATE, np.float32)  # PCM16: just over the limit
    buffer = io.BytesIO()
    soundfile.write(buffer, big, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(server).audio.transcriptions.create(model="whisper-1", file=("big.wav", buffer.getvalue()))
    assert type(raised.value) is openai.APIStatusError  # the SDK has no class of its own for 413
    assert error_of(raised) == (413, "too_large")
    assert sdk(server).audio.transcriptions.create(
        model="whisper-1", file=("a.wav", tone_file("after"))
    ).text == ("after")


def test_over_capacity_is_503_while_every_slot_is_taken() -> None:
    with live_server(FakeEngine(slots=1), upload_wait_s=0) as live:
        with connect(live.ws_url) as held:
            assert '"Ready"' in str(held.recv())  # the one slot is taken
            with pytest.raises(openai.InternalServerError) as raised:
                sdk(live).audio.transcriptions.create(model="whisper-1", file=("a.wav", tone_file("busy")))
            assert error_of(raised) == (503, "over_capacity")
            assert raised.value.response.headers["retry-after"] == "1"
        live.wait_for_no_streams()
        assert sdk(live).audio.transcriptions.create(
            model="whisper-1", file=("a.wav", tone_file("free"))
        ).text == ("free")


def test_a_declared_oversize_body_is_refused_unread(server: LiveServer) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(server).audio.transcriptions.create(model="whisper-1", file=("big.wav", bytes(3 * LIMIT)))
    assert error_of(raised) == (413, "too_large")


def test_an_undeclared_oversize_body_is_cut_off_at_the_limit(server: LiveServer) -> None:
    boundary = "stt-boundary"

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        disposition = 'Content-Disposition: form-data; name="file"; filename="a.wav"'
        yield f"--{boundary}\r\n{disposition}\r\n\r\n".encode()
        for _ in range(3 * LIMIT // 65536):
            yield bytes(65536)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx2.post(
        server.url + "/v1/audio/transcriptions",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


# -- stream=true -------------------------------------------------------------------------------


def test_stream_sends_a_delta_per_word_then_done(server: LiveServer) -> None:
    for response_format in ("json", "text"):
        with sdk(server).audio.transcriptions.create(
            model="whisper-1", file=("a.wav", tone_file(TEXT)), stream=True, response_format=response_format
        ) as events:
            received = list(events)
        *deltas, done = received
        assert all(isinstance(e, TranscriptionTextDeltaEvent) for e in deltas)
        assert [e.delta for e in deltas] == ["hello", " there", " general", " kenobi"]
        assert isinstance(done, TranscriptionTextDoneEvent) and done.text == TEXT
        assert done.logprobs is None and done.usage is None


class HoldingEngine(RecordingEngine):
    """Steps freely for `free_rows` more rows once armed, then holds every step until the
    test sets `release`: the file cannot finish while the test looks."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.limit: int | None = None
        self.release = threading.Event()

    def arm(self, free_rows: int) -> None:
        self.limit = self.rows() + free_rows

    def rows(self) -> int:
        return sum(len(r.slots) for r in self.records)

    def step(self, batch: StepInput) -> StepOutput:
        if self.limit is not None and self.rows() >= self.limit and not self.release.wait(30):
            raise RuntimeError("the test never released the engine")
        return super().step(batch)


def test_stream_starts_before_the_file_is_done_and_a_client_that_leaves_frees_its_slot() -> None:
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(150)]  # 4 frames each
    engine = HoldingEngine(slots=2)
    with live_server(engine) as live:
        try:
            engine.arm(40)  # the first word is out after 4 + 6 (delay) frames; 600 make the file
            route = live.app.state.transcriptions
            data = tone_file(" ".join(words))
            with sdk(live).audio.transcriptions.create(
                model="whisper-1", file=("a.wav", data), stream=True
            ) as events:
                first = next(iter(events))
                assert isinstance(first, TranscriptionTextDeltaEvent) and first.delta == words[0]
                assert httpx2.get(live.url + "/v1/status").json()["slots_used"] == 1  # still transcribing
            # The client closed the response: its stream is dropped while the engine still holds.
            assert live.call(lambda: route.wait_idle(10))
            assert httpx2.get(live.url + "/v1/status").json()["slots_used"] == 0
            assert not engine.release.is_set() and engine.limit is not None and engine.rows() <= engine.limit
        finally:
            engine.release.set()


def test_an_engine_failure_mid_stream_raises_api_error() -> None:
    steps = iter(range(1_000_000))
    engine = FailingEngine(lambda batch: len(batch) > 0 and next(steps) in (30, 100), slots=2)
    with live_server(engine) as live:
        client = sdk(live)
        with client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", tone_file(TEXT)), stream=True
        ) as events:
            seen: list[object] = []
            with pytest.raises(openai.APIError, match="engine failed"):
                for event in events:
                    seen.append(event)
        assert seen and all(isinstance(e, TranscriptionTextDeltaEvent) for e in seen)
        with pytest.raises(openai.InternalServerError) as raised:
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", tone_file("again " * 20)))
        assert error_of(raised) == (500, "internal_error")


# -- GET /v1/models ------------------------------------------------------------------------------


def test_models_lists_the_served_engine_and_model(server: LiveServer) -> None:
    client = sdk(server)
    (model,) = client.models.list().data
    assert (model.id, model.object, model.owned_by) == ("fake", "model", "stt-server")
    assert 1_700_000_000 < model.created <= time.time()
    assert model.model_dump()["engine"] == "fake"
    assert client.models.retrieve("fake") == model
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-4o-transcribe")
    assert error_of(raised) == (404, "model_not_found")
