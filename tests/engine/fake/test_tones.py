import numpy as np
import pytest

from stt.constants import FRAME_SAMPLES, SAMPLE_RATE
from stt.engine.fake.tones import ALPHABET, SILENCE, decode_frames, encode_text


def test_every_symbol_decodes_to_itself() -> None:
    audio = encode_text(ALPHABET, gap_frames=0)
    symbols = decode_frames(audio.reshape(-1, FRAME_SAMPLES))
    assert symbols.tolist() == list(range(len(ALPHABET)))


def test_words_are_separated_by_silence() -> None:
    audio = encode_text("ab c", gap_frames=2, lead_frames=1)
    symbols = decode_frames(audio.reshape(-1, FRAME_SAMPLES)).tolist()
    assert symbols == [SILENCE, 0, 1, SILENCE, SILENCE, 2, SILENCE, SILENCE]


def test_survives_pcm16_quantisation() -> None:
    from stt.audio import float32_to_pcm16, pcm16_to_float32

    audio = pcm16_to_float32(float32_to_pcm16(encode_text("quantised")))
    symbols = decode_frames(audio.reshape(-1, FRAME_SAMPLES))
    assert "".join(ALPHABET[s] for s in symbols if s != SILENCE) == "quantised"


def test_noise_speechlike_and_quiet_frames_carry_no_symbol() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, (4, FRAME_SAMPLES)).astype(np.float32)
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    chord = (0.3 * np.sin(2 * np.pi * 500 * t) + 0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)
    off_bin = (0.5 * np.sin(2 * np.pi * 456.25 * t)).astype(np.float32)
    quiet = (0.001 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)
    frames = np.vstack([noise, chord, off_bin, quiet])
    assert (decode_frames(frames) == SILENCE).all()


def test_rejects_uncodable_text_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="cannot be tone-coded"):
        encode_text("héllo")
    with pytest.raises(ValueError):
        decode_frames(np.zeros((2, 100), np.float32))
    assert encode_text("").size == 0


def test_decoding_agrees_with_the_full_spectrum_definition() -> None:
    """The folded decoder equals the definition: the peak of the whole 1920-point power
    spectrum is a symbol bin holding at least 60% of the energy (random tones, noise, mixes)."""
    rng = np.random.default_rng(7)
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    frames = []
    for _ in range(400):
        tone = 0.5 * np.sin(2 * np.pi * 12.5 * rng.integers(0, 961) * t)  # any exact bin
        symbol = 0.5 * np.sin(2 * np.pi * (400 + 100 * rng.integers(0, len(ALPHABET))) * t)
        noise = rng.normal(0, rng.uniform(0, 0.4), FRAME_SAMPLES)
        frames.append(rng.choice([tone, symbol, noise, symbol + noise, tone + symbol]))
    batch = np.asarray(frames, dtype=np.float32)
    power = np.abs(np.fft.rfft(batch.astype(np.float64), axis=1)) ** 2
    peak = power.argmax(axis=1)
    index, offset = np.divmod(peak - 32, 8)
    carried = (
        (power[np.arange(len(batch)), peak] >= 0.6 * power.sum(axis=1))
        & (offset == 0)
        & (index >= 0)
        & (index < len(ALPHABET))
        & (np.sqrt((batch.astype(np.float64) ** 2).mean(axis=1)) >= 0.01)
    )
    expected = np.where(carried, index, SILENCE)
    decoded = decode_frames(batch)
    assert (decoded != SILENCE).sum() > 50 and (decoded == SILENCE).sum() > 50
    assert decoded.tolist() == expected.tolist()
