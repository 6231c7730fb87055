"""A tone code that turns text into audio and back, one symbol per 80 ms frame.

The fake engine decodes it, so tests and load benchmarks can send audio whose expected
transcript is known exactly and differs per stream: a lost, duplicated, reordered or
foreign frame changes the decoded words. Each symbol is a pure sine on an exact FFT bin of
a 1920-sample frame (bins are 12.5 Hz apart), so decoding one frame is one rfft and argmax.
A silent frame separates words.

Symbol bins are all multiples of `_BIN_STEP`, so the decoder folds each frame into
`_BIN_STEP` segments before its FFT (see `decode_frames`): a 240-point FFT instead of a
1920-point one, which made the fake engine's own compute (not the server's) the bulk of the
load benchmark's engine-thread CPU.
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
_FOLDED = FRAME_SAMPLES // _BIN_STEP
"""Length of a folded frame: its DFT bin k is the frame's DFT bin k * _BIN_STEP."""
assert _FOLDED * _BIN_STEP == FRAME_SAMPLES and _FIRST_BIN % _BIN_STEP == 0
_FIRST_FOLDED_BIN = _FIRST_BIN // _BIN_STEP


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
    """Symbol id per frame of an (n, FRAME_SAMPLES) array; SILENCE where none is carried.

    A frame carries symbol i when bin `_FIRST_BIN + i * _BIN_STEP` of its one-sided power
    spectrum holds at least `_MIN_POWER_FRACTION` (> 1/2) of the spectrum's total: that bin
    is then the peak, so only the symbol bins need computing. Summing the frame's
    `_BIN_STEP` segments of `_FOLDED` samples gives a signal whose DFT bin k is exactly the
    frame's bin k * _BIN_STEP; the total comes from Parseval's theorem (the one-sided sum
    counts DC and Nyquist once: (N * sum(x^2) + |X_0|^2 + |X_N/2|^2) / 2).
    """
    if frames.ndim != 2 or frames.shape[1] != FRAME_SAMPLES:
        raise ValueError(f"frames must be (n, {FRAME_SAMPLES}), got {frames.shape}")
    n = frames.shape[0]
    out = np.full(n, SILENCE, dtype=np.int64)
    if n == 0:
        return out
    # float32 throughout (the frames' own type): no float64 copy of the batch, and a
    # float32 FFT; the bins' powers are then squared in float64. A symbol bin of a tone holds
    # nearly all of its frame's energy, far from both thresholds, so rounding cannot flip it.
    x = np.asarray(frames, dtype=np.float32)
    energy = np.einsum("ij,ij->i", x, x).astype(np.float64)
    spectrum = np.fft.rfft(x.reshape(n, _BIN_STEP, _FOLDED).sum(axis=1), axis=1)  # bins 0, 8, ... 960
    power = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
    total = (FRAME_SAMPLES * energy + power[:, 0] + power[:, -1]) / 2
    symbols = power[:, _FIRST_FOLDED_BIN : _FIRST_FOLDED_BIN + len(ALPHABET)]
    best = symbols.argmax(axis=1)
    peak = symbols[np.arange(n), best]
    loud = energy >= _MIN_RMS**2 * FRAME_SAMPLES
    ok = loud & (peak >= _MIN_POWER_FRACTION * np.maximum(total, 1e-30))
    out[ok] = best[ok]
    return out
