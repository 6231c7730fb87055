"""How decodes search: beam sizes reach the model call, and a failed try is retried hotter.

A fake faster-whisper model (the real tokenizer of the packaged weights, scripted
generations) stands in for the network: what matters is which calls the decoder makes and
what it keeps, not what Whisper would hear.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stt.engine.whisper.options import FALLBACK_TEMPERATURES, Decodes, WhisperOptions

pytest.importorskip("faster_whisper")
pytest.importorskip("ctranslate2")

from stt.engine.whisper.decode import BEST_OF, Decoder, Search, stream_words
from stt.engine.whisper.engine import DecodeRequest, WhisperEngine, generator_threads
from stt.engine.whisper.weights import PACKAGED

LOOP = " the" * 40
"""A text that compresses far better than Whisper's 2.4: a repetition loop."""


@dataclass(frozen=True)
class Try:
    """What the fake model generates for a window at some temperature."""

    text: str
    logprob: float = -0.2
    """Per-token log-probability (CTranslate2's length-normalised score)."""
    no_speech: float = 0.01


Script = Callable[[str, float], Try]
"""(language of the window's prompt, temperature) -> what the model generates."""


class FakeGenerator:
    """`WhisperModel.model`: records each `generate` call's options; answers from a script."""

    is_multilingual = True

    def __init__(self, tokenizer: Any, script: Script) -> None:
        self._tokenizer = tokenizer
        self._script = script
        self.calls: list[dict[str, Any]] = []
        self.detected: list[tuple[str, float]] = [("<|en|>", 0.99)]
        """What `detect_language` finds in every window (Whisper's tokens and probabilities)."""

    def generate(self, features: Any, prompts: list[list[int]], **options: Any) -> list[Any]:
        assert np.asarray(features).shape[0] == len(prompts), "one encoded window per prompt"
        self.calls.append({"windows": len(prompts), "prompts": prompts, **options})
        temperature = float(options.get("sampling_temperature", 0.0))
        out = []
        for prompt in prompts:
            language = self._tokenizer.tokenizer.id_to_token(prompt[1]).strip("<|>")
            made = self._script(language, temperature)
            ids = [*self._tokenizer.encode(made.text), self._tokenizer.eot]
            if prompt[-1] != self._tokenizer.no_timestamps:  # a segment's timestamps around its text
                begin = self._tokenizer.timestamp_begin
                ids = [begin, *ids[:-1], begin + 50, self._tokenizer.eot]
            out.append(
                SimpleNamespace(sequences_ids=[ids], scores=[made.logprob], no_speech_prob=made.no_speech)
            )
        return out

    def detect_language(self, encoded: Any) -> list[list[tuple[str, float]]]:
        return [list(self.detected) for _ in range(np.asarray(encoded).shape[0])]


class FakeWhisper:
    """The parts of faster-whisper's `WhisperModel` the decoder uses."""

    def __init__(self, script: Script) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from tokenizers import Tokenizer as HfTokenizer

        module, folder = PACKAGED["base"].extras
        files = importlib.resources.files(module)
        self.hf_tokenizer = HfTokenizer.from_str(files.joinpath(f"{folder}/tokenizer.json").read_text())
        self.tokenizer = Tokenizer(self.hf_tokenizer, True, task="transcribe", language="en")
        self.model = FakeGenerator(self.tokenizer, script)

    def feature_extractor(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.zeros((80, max(1, audio.size // 160)), dtype=np.float32)

    def encode(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.zeros((1, features.shape[-1] // 2, 4), dtype=np.float32)

    def find_alignment(
        self, tokenizer: Any, tokens: list[list[int]], features: Any, frames: list[int]
    ) -> list[list[dict[str, Any]]]:
        """Each window's words, 0.5 s each."""
        out = []
        for ids in tokens:
            words = tokenizer.decode(ids).split()
            out.append(
                [{"word": f" {w}", "start": 0.5 * i, "end": 0.5 * i + 0.4} for i, w in enumerate(words)]
            )
        return out


def decoder_of(script: Script) -> tuple[Decoder, FakeGenerator]:
    model = FakeWhisper(script)
    return Decoder(model, ("en", "fr"), 20.0), model.model


SPEECH = np.zeros(16_000, dtype=np.float32)


def texts(decoded: Any) -> str:
    return " ".join(w.text for w in stream_words(decoded.words, 0.0, 30.0))


def test_beam_size_reaches_the_model_call_and_a_good_first_try_is_kept() -> None:
    decoder, model = decoder_of(lambda language, t: Try(" Hello world."))
    decoded = decoder(SPEECH, "en", Search(beam_size=5, temperatures=FALLBACK_TEMPERATURES))
    assert texts(decoded) == "Hello world."
    assert len(model.calls) == 1
    assert model.calls[0]["beam_size"] == 5
    assert "sampling_temperature" not in model.calls[0]
    assert (decoded.temperature, decoded.tries) == (0.0, 1)
    decoder(SPEECH, "en")  # greedy by default
    assert model.calls[1]["beam_size"] == 1


def test_timestamp_tokens_stay_out_of_the_text() -> None:
    decoder, model = decoder_of(lambda language, t: Try(" Hello world."))
    decoded = decoder(SPEECH, "en", Search(beam_size=5, timestamps=True))
    assert texts(decoded) == "Hello world."
    assert model.calls[0]["max_initial_timestamp_index"] == 50  # the first segment starts within 1 s


def test_a_repetition_loop_is_retried_at_the_next_temperature_sampling_best_of() -> None:
    decoder, model = decoder_of(lambda language, t: Try(LOOP) if t == 0.0 else Try(" Hello world."))
    decoded = decoder(SPEECH, "en", Search(beam_size=5, temperatures=(0.2, 0.4)))
    assert texts(decoded) == "Hello world."
    assert (decoded.temperature, decoded.tries) == (0.2, 2)
    assert not decoded.hallucinated
    retry = model.calls[1]
    assert (retry["beam_size"], retry["num_hypotheses"], retry["sampling_temperature"]) == (1, BEST_OF, 0.2)
    assert retry["sampling_topk"] == 0  # the whole distribution, as Whisper samples


def test_low_confidence_speech_is_retried_but_silence_is_not() -> None:
    unsure, model = decoder_of(lambda language, t: Try(" Hello world.", logprob=-1.5 if t < 0.3 else -0.3))
    decoded = unsure(SPEECH, "en", Search(temperatures=(0.2, 0.4, 0.6)))
    assert [c.get("sampling_temperature", 0.0) for c in model.calls] == [0.0, 0.2, 0.4]
    assert decoded.temperature == 0.4
    silent, model = decoder_of(lambda language, t: Try(" Thank you.", logprob=-1.5, no_speech=0.9))
    decoded = silent(SPEECH, "en", Search(temperatures=(0.2, 0.4)))
    assert len(model.calls) == 1  # probably no speech: dropped, not retried
    assert decoded.hallucinated


def test_without_temperatures_a_failed_try_is_not_retried() -> None:
    decoder, model = decoder_of(lambda language, t: Try(LOOP))
    decoded = decoder(SPEECH, "en", Search(beam_size=5))
    assert len(model.calls) == 1
    assert decoded.hallucinated  # the engine drops it


def test_when_every_try_fails_the_most_likely_that_is_not_a_loop_is_kept() -> None:
    tries = {
        0.0: Try(LOOP, logprob=-0.1),
        0.2: Try(" one two", logprob=-2.7),
        0.4: Try(" three four", logprob=-1.8),
    }
    tries[0.6] = Try(LOOP, logprob=-0.05)
    decoder, model = decoder_of(lambda language, t: tries[t])
    decoded = decoder(SPEECH, "en", Search(temperatures=(0.2, 0.4, 0.6)))
    assert len(model.calls) == 4
    assert texts(decoded) == "three four"
    assert (decoded.temperature, decoded.tries) == (0.4, 4)


def test_in_a_batch_only_the_failed_windows_are_retried() -> None:
    """Three windows in one call, the French one looping at temperature 0: the retry decodes
    it alone, with its own prompt; the others keep their first try."""

    def script(language: str, t: float) -> Try:
        if t == 0.0:
            return Try(LOOP) if language == "fr" else Try(" first")
        return Try(" retried")

    decoder, model = decoder_of(script)
    decoded = decoder.batch([(SPEECH, "en"), (SPEECH, "fr"), (SPEECH, "en")], Search(temperatures=(0.2,)))
    assert [texts(d) for d in decoded] == ["first", "retried", "first"]
    assert [d.tries for d in decoded] == [1, 2, 1]
    assert [c["windows"] for c in model.calls] == [3, 1]
    french = decoder._tokenizers["fr"]
    assert model.calls[1]["prompts"] == [[*french.sot_sequence, french.no_timestamps]]


@pytest.mark.parametrize(
    ("where", "final", "spare", "applies"),
    [
        (Decodes.NONE, True, True, False),
        (Decodes.FINAL, True, False, True),
        (Decodes.FINAL, False, True, False),
        (Decodes.SPARE, False, True, True),
        (Decodes.SPARE, False, False, False),
        (Decodes.SPARE, True, False, False),  # a final under load stays greedy
        (Decodes.ALL, False, False, True),
    ],
)
def test_which_decodes_get_a_search(where: Decodes, final: bool, spare: bool, applies: bool) -> None:
    assert where.applies(final=final, spare=spare) is applies


def engine_of(options: WhisperOptions, script: Script) -> tuple[WhisperEngine, FakeGenerator]:
    model = FakeWhisper(script)
    return WhisperEngine(model, options, slots=2), model.model


def test_the_engine_beams_its_final_decodes_and_groups_a_batch_by_search() -> None:
    """`--whisper-beam final`: in one batch a final and two partial windows, decoded in two
    model calls (the partial ones together, greedy; the final with 5 beams)."""
    engine, model = engine_of(
        WhisperOptions(beam=Decodes.FINAL, fallback=Decodes.NONE), lambda w, t: Try(" Hi.")
    )
    try:
        requests = [
            DecodeRequest(SPEECH, 0.0, "en", final=False),
            DecodeRequest(SPEECH, 3.0, "en", final=True),
            DecodeRequest(SPEECH, 6.0, "en", final=False),
        ]
        out = engine.decode_batch(requests)
        assert [[(w.text, w.start_s) for w in h.words] for h in out] == [
            [("Hi.", 0.0)],
            [("Hi.", 3.0)],
            [("Hi.", 6.0)],
        ]
        assert sorted((c["windows"], c["beam_size"]) for c in model.calls) == [(1, 5), (2, 1)]
        assert all("sampling_temperature" not in c for c in model.calls)
        assert engine.searches == {Search(1): 2, Search(5, timestamps=True): 1}
        beamed = next(c for c in model.calls if c["beam_size"] == 5)
        greedy = next(c for c in model.calls if c["beam_size"] == 1)
        english = engine._decoder._tokenizers["en"]
        assert beamed["prompts"] == [list(english.sot_sequence)]  # Whisper writes its timestamps
        assert greedy["prompts"] == [[*english.sot_sequence, english.no_timestamps]] * 2
    finally:
        engine.close()


def test_spare_beams_a_lone_partial_decode_and_fallback_is_counted() -> None:
    """`--whisper-beam spare`: a partial decode that runs alone while nothing else waits gets
    the beams; a batch of several (the decoder is busy) stays greedy. A loop is retried."""
    options = WhisperOptions(beam=Decodes.SPARE, fallback=Decodes.ALL)
    engine, model = engine_of(options, lambda w, t: Try(LOOP) if t == 0.0 else Try(" Hi."))
    try:
        engine.decode_batch([DecodeRequest(SPEECH, 0.0, "en")])
        assert model.calls[0]["beam_size"] == options.beam_size
        assert model.calls[1]["sampling_temperature"] == FALLBACK_TEMPERATURES[0]
        assert engine.fallbacks == 1
        model.calls.clear()
        engine.decode_batch([DecodeRequest(SPEECH, 0.0, "en"), DecodeRequest(SPEECH, 0.0, "fr")])
        assert model.calls[0]["beam_size"] == 1
        assert engine.fallbacks == 3
    finally:
        engine.close()


@pytest.mark.parametrize(("beam", "measured"), [(Decodes.SPARE, 0), (Decodes.FINAL, 1), (Decodes.ALL, 1)])
def test_a_decode_that_used_spare_time_is_not_a_capacity_measurement(beam: Decodes, measured: int) -> None:
    """A lone partial decode beamed because the decoder was idle costs more than a partial
    decode under load: the measured capacity does not follow it (it would admit fewer streams)."""
    engine, model = engine_of(
        WhisperOptions(beam=beam, fallback=Decodes.NONE), lambda language, t: Try(" Hi.")
    )
    try:
        job = engine._queue.submit(0, DecodeRequest(SPEECH, 0.0, "en"))
        assert [w.text for w in job.future.result(timeout=30).words] == ["Hi."]
        assert model.calls[0]["beam_size"] == (1 if beam is Decodes.FINAL else 5)
        assert engine.capacity().samples == measured
    finally:
        engine.close()


UNSURE = [("<|en|>", 0.5), ("<|fr|>", 0.3)]
"""A detection under `SURE_LANGUAGE`: half a second of speech, Whisper unsure of its language."""


def test_a_window_flagged_sure_only_stops_after_an_unsure_detection() -> None:
    """Of three windows with no language, detected unsure, only the one not flagged is
    generated (in a call of its own); the flagged ones come back without words or tries."""
    decoder, model = decoder_of(lambda language, t: Try(" Hello."))
    model.detected = UNSURE
    decoded = decoder.batch([(SPEECH, None)] * 3, sure_only=[True, False, True])
    assert [texts(d) for d in decoded] == ["", "Hello.", ""]
    assert [(d.tries, d.language, d.language_sure) for d in decoded] == [
        (0, "en", False),
        (1, "en", False),
        (0, "en", False),
    ]
    assert [c["windows"] for c in model.calls] == [1]
    model.calls.clear()
    model.detected = [("<|fr|>", 0.9)]  # sure: flagged or not, every window is generated
    decoded = decoder.batch([(SPEECH, None), (SPEECH, "en")], sure_only=[True, True])
    assert [(texts(d), d.language, d.tries) for d in decoded] == [("Hello.", "fr", 1), ("Hello.", "en", 1)]
    assert [c["windows"] for c in model.calls] == [2]


def test_an_unsure_partial_decode_is_not_generated_nor_measured_but_a_final_is() -> None:
    """A partial decode whose language is unsure would have its words dropped: the engine
    stops it after the detection (counted in `detect_only`) and its cost is not a capacity
    measurement; a final decode keeps its words whatever the detection, so it is generated."""
    engine, model = engine_of(
        WhisperOptions(beam=Decodes.NONE, fallback=Decodes.NONE), lambda w, t: Try(" Hi.")
    )
    model.detected = UNSURE
    try:
        partial = engine._queue.submit(0, DecodeRequest(SPEECH, 0.0, None))
        hypothesis = partial.future.result(timeout=30)
        assert (hypothesis.words, hypothesis.language_sure) == ([], False)
        assert (model.calls, engine.detect_only, engine.capacity().samples) == ([], 1, 0)
        final = engine._queue.submit(0, DecodeRequest(SPEECH, 2.0, None, final=True))
        assert [(w.text, w.start_s) for w in final.future.result(timeout=30).words] == [("Hi.", 2.0)]
        assert ([c["windows"] for c in model.calls], engine.detect_only, engine.capacity().samples) == (
            [1],
            1,
            1,
        )
    finally:
        engine.close()


class EncoderOnly(FakeWhisper):
    """The copy of the model the encoder runs on: generating or aligning on it is a mistake."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.model.detected = [("<|fr|>", 0.99)]  # what a detection on the wrong copy would say
        self.encoded = 0

    def encode(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.encoded += 1
        return super().encode(features)

    def find_alignment(
        self, tokenizer: Any, tokens: list[list[int]], features: Any, frames: list[int]
    ) -> list[list[dict[str, Any]]]:
        raise AssertionError("aligned on the encoder's copy of the model")


class GeneratorOnly(FakeWhisper):
    """The copy that generates, detects and aligns: encoding on it is a mistake."""

    def encode(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        raise AssertionError("encoded on the generator's copy of the model")


def test_a_generator_model_generates_detects_and_aligns_while_the_model_encodes() -> None:
    """`--whisper-decode-threads`: the encoder's copy only encodes; the language is the one
    the generator's copy detects (English, where the encoder's would say French)."""
    encoder = EncoderOnly(lambda language, t: Try(" wrong copy."))
    generator = GeneratorOnly(lambda language, t: Try(" Hello world."))
    decoder = Decoder(encoder, ("en", "fr"), 20.0, generator=generator)
    decoded = decoder(SPEECH, None, Search(beam_size=5))
    assert texts(decoded) == "Hello world."
    assert (decoded.language, decoded.language_sure) == ("en", True)
    assert encoder.encoded == 1
    assert encoder.model.calls == []
    assert [c["beam_size"] for c in generator.model.calls] == [5]
    decoder.probe(4)  # the capacity probe measures the same split
    assert encoder.encoded == 2
    assert len(generator.model.calls) == 2


@pytest.mark.parametrize(
    ("cpu_threads", "decode_threads", "copy"),
    [(2, 1, 1), (0, 1, 1), (2, 0, 0), (2, 2, 0), (1, 1, 0), (1, 2, 2)],
)
def test_the_generator_gets_its_own_copy_only_with_other_threads(
    cpu_threads: int, decode_threads: int, copy: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # cpu_threads 0: one per core
    options = WhisperOptions(cpu_threads=cpu_threads, decode_threads=decode_threads)
    assert generator_threads(options) == copy
