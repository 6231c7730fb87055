import io
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt.audio import (
    FrameAssembler,
    as_float32,
    float32_to_pcm16,
    pcm16_to_float32,
    pcm16_view,
    read_audio,
    resample,
    split_frames,
    to_float32_into,
    to_mono,
    write_wav,
)
from stt.constants import FRAME_SAMPLES, SAMPLE_RATE

int16_lists = st.lists(st.integers(-32768, 32767), max_size=5000)


@given(int16_lists)
def test_pcm16_round_trip_is_exact(values: list[int]) -> None:
    pcm = np.array(values, dtype="<i2").tobytes()
    floats = pcm16_to_float32(pcm)
    assert floats.dtype == np.float32
    assert np.all(floats >= -1.0) and np.all(floats < 1.0)
    assert float32_to_pcm16(floats) == pcm


def test_pcm16_extremes_and_clipping() -> None:
    assert pcm16_to_float32(np.array([-32768, 32767], "<i2").tobytes()).tolist() == [-1.0, 32767 / 32768]
    assert np.frombuffer(float32_to_pcm16([2.0, -2.0]), "<i2").tolist() == [32767, -32768]


def test_pcm16_rejects_odd_byte_count() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_to_float32(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even"):
        pcm16_view(b"\x00")


@given(int16_lists)
def test_pcm16_kept_as_int16_converts_later_to_the_same_floats(values: list[int]) -> None:
    """The server keeps PCM16 as an int16 view and converts a step's batch at once: the
    floats are bit for bit those of decoding each message."""
    pcm = np.array(values, dtype="<i2").tobytes()
    view = pcm16_view(pcm)
    assert view.dtype == np.int16 and view.base is not None  # no copy of the message
    batch = to_float32_into(view, np.empty(view.size, np.float32))
    np.testing.assert_array_equal(batch, pcm16_to_float32(pcm))
    np.testing.assert_array_equal(as_float32(view), batch)


@given(st.integers(0, 5 * FRAME_SAMPLES + 7), st.lists(st.integers(0, 3000), max_size=30))
def test_assembler_frames_equal_one_shot_framing(total: int, cuts: list[int]) -> None:
    """However the stream is chunked, the frames are the stream's own 1920-sample frames."""
    audio = np.arange(total, dtype=np.float32) / (total + 1)
    bounds = sorted({min(c, total) for c in cuts} | {0, total})
    assembler = FrameAssembler()
    got = [assembler.push(audio[a:b]) for a, b in itertools.pairwise(bounds)]
    frames = np.concatenate(got) if got else np.zeros((0, FRAME_SAMPLES), np.float32)
    expected, tail = split_frames(audio)
    assert frames.shape == expected.shape
    np.testing.assert_array_equal(frames, expected)
    assert assembler.pending_samples == tail.size
    np.testing.assert_array_equal(assembler.take_remainder(), tail)
    assert assembler.pending_samples == 0
    assert assembler.samples_in == total


@given(
    st.integers(0, 4 * FRAME_SAMPLES + 7),
    st.lists(st.tuples(st.integers(0, 3000), st.booleans()), max_size=20),
)
def test_assembler_frames_of_int16_and_mixed_chunks(total: int, cuts: list[tuple[int, bool]]) -> None:
    """PCM16 chunks (int16) give int16 frames; a stream that mixes int16 and float32 chunks
    gets, once converted, exactly the frames of its float32 audio."""
    values = (np.arange(total) * 37 % 65536 - 32768).astype(np.int16)
    floats = as_float32(values)
    bounds = sorted({min(c, total) for c, _ in cuts} | {0, total})
    as_float = dict(cuts)
    only_int = FrameAssembler()
    mixed = FrameAssembler()
    int_frames, mixed_frames = [], []
    for a, b in itertools.pairwise(bounds):
        out = only_int.push(values[a:b])
        assert out.dtype == np.int16
        int_frames.append(out)
        mixed_frames.append(as_float32(mixed.push(floats[a:b] if as_float.get(a) else values[a:b])))
    expected, tail = split_frames(floats)
    got = np.concatenate(int_frames) if int_frames else np.zeros((0, FRAME_SAMPLES), np.int16)
    np.testing.assert_array_equal(as_float32(got), expected)
    got_mixed = np.concatenate(mixed_frames) if mixed_frames else np.zeros((0, FRAME_SAMPLES), np.float32)
    np.testing.assert_array_equal(got_mixed, expected)
    np.testing.assert_array_equal(as_float32(only_int.take_remainder()), tail)
    np.testing.assert_array_equal(as_float32(mixed.take_remainder()), tail)


def test_assembler_frame_boundaries() -> None:
    assembler = FrameAssembler()
    assert assembler.push(np.ones(FRAME_SAMPLES - 1, np.float32)).shape == (0, FRAME_SAMPLES)
    out = assembler.push(np.full(2, 2.0, np.float32))
    assert out.shape == (1, FRAME_SAMPLES)
    assert out[0, -1] == 2.0 and out[0, -2] == 1.0
    assert assembler.pending_samples == 1
    assert assembler.push(np.zeros(0, np.float32)).shape == (0, FRAME_SAMPLES)
    assert assembler.push(np.zeros(3 * FRAME_SAMPLES - 1, np.float32)).shape == (3, FRAME_SAMPLES)
    assert assembler.pending_samples == 0


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(to_mono(stereo), [0.5, 0.5])
    with pytest.raises(ValueError):
        to_mono(np.zeros((2, 2, 2), np.float32))


def test_resample_keeps_duration_and_pitch() -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = resample(tone, rate)
    assert abs(out.size - SAMPLE_RATE) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = spectrum.argmax() * SAMPLE_RATE / out.size
    assert abs(peak_hz - 440) < 2
    assert resample(tone, SAMPLE_RATE) is tone or np.array_equal(resample(tone, SAMPLE_RATE), tone)
    with pytest.raises(ValueError):
        resample(tone, 0)


def test_read_audio_decodes_and_resamples(tmp_path: object) -> None:
    import soundfile

    rate = 48_000
    stereo = np.zeros((rate // 2, 2), dtype=np.float32)
    stereo[:, 0] = 0.5
    buf = io.BytesIO()
    soundfile.write(buf, stereo, rate, format="FLAC")
    buf.seek(0)
    out = read_audio(buf)
    assert abs(out.size - SAMPLE_RATE // 2) <= 2
    assert abs(float(np.median(out)) - 0.25) < 0.01


def test_read_audio_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="cannot decode"):
        read_audio(io.BytesIO(b"this is not audio at all" * 10))


def test_write_then_read_wav(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "x.wav"
    audio = (np.arange(4800) % 100 / 200).astype(np.float32)
    write_wav(path, audio)
    np.testing.assert_allclose(read_audio(path), audio, atol=1 / 32768)
