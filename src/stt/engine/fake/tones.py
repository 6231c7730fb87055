"""A tone code that turns text into audio and back, one symbol per 80 ms frame.

The fake engine decodes it, so tests and load benchmarks can send audio whose expected
transcript is known exactly and differs per stream: a lost, duplicated, reordered or
foreign frame changes the decoded words. Each symbol is a pure sine on an exact FFT bin of
a 1920-sample frame (bins are 12.5 Hz apart), so decoding one frame is one rfft and argmax.
A silent frame separates words.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stt.constants import FRAME_SAMPLES, SAMPLE_RATE

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789'"
"""Symbols the code can carry; words are lower-case runs of these."""

BASE_HZ = 400.0
STEP_HZ = 100.0
AMPLITUDE = 0.5
SILENCE = -1
"""Symbol id of a frame that carries no symbol (silence, speech or noise)."""

_BIN_HZ = SAMPLE_RATE / FRAME_SAMPLES
_FIRST_BIN = round(BASE_HZ / _BIN_HZ)
_BIN_STEP = round(STEP_HZ / _BIN_HZ)
_MIN_POWER_FRACTION = 0.6
"""A frame is a symbol only if one bin holds this share of its energy: speech never does."""
_MIN_RMS = 0.01


def symbol_hz(index: int) -> float:
    return BASE_HZ + STEP_HZ * index


def encode_text(text: str, *, gap_frames: int = 1, lead_frames: int = 0) -> npt.NDArray[np.float32]:
    """Audio for `text`: one frame per character, `gap_frames` of silence after each word.

    Raises ValueError for characters outside ALPHABET (after lower-casing).
    """
    t = np.arange(FRAME_SAMPLES, dtype=np.float64) / SAMPLE_RATE
    frames: list[npt.NDArray[np.float64]] = [np.zeros(FRAME_SAMPLES)] * lead_frames
    silence = np.zeros(FRAME_SAMPLES)
    for word in text.lower().split():
        for char in word:
            index = ALPHABET.find(char)
            if index < 0:
                raise ValueError(f"character {char!r} cannot be tone-coded; allowed: {ALPHABET}")
            frames.append(AMPLITUDE * np.sin(2 * np.pi * symbol_hz(index) * t))
        frames.extend([silence] * gap_frames)
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(frames).astype(np.float32)


def decode_frames(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Symbol id per frame of an (n, FRAME_SAMPLES) array; SILENCE where none is carried."""
    if frames.ndim != 2 or frames.shape[1] != FRAME_SAMPLES:
        raise ValueError(f"frames must be (n, {FRAME_SAMPLES}), got {frames.shape}")
    out = np.full(frames.shape[0], SILENCE, dtype=np.int64)
    if frames.shape[0] == 0:
        return out
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    peak = power.argmax(axis=1)
    total = power.sum(axis=1)
    rows = np.arange(frames.shape[0])
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    index, offset = np.divmod(peak - _FIRST_BIN, _BIN_STEP)
    ok = (
        (rms >= _MIN_RMS)
        & (power[rows, peak] >= _MIN_POWER_FRACTION * np.maximum(total, 1e-30))
        & (offset == 0)
        & (index >= 0)
        & (index < len(ALPHABET))
    )
    out[ok] = index[ok]
    return out
