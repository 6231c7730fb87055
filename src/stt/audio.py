"""Audio helpers: PCM16 <-> float32, exact 80 ms framing, resampling and file decoding.

The wire format is always 24 kHz mono PCM16 LE; resampling and decoding exist for clients
(the CLI, the upload endpoint) that start from arbitrary audio files.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from stt.constants import FRAME_SAMPLES, SAMPLE_RATE, SAMPLE_WIDTH_BYTES

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]
SampleArray = Float32Array | Int16Array
"""Audio as received: float32 in [-1, 1], or PCM16 values not yet scaled (see `pcm16_view`)."""

_INT16_SCALE = 32768.0
_INT16_INVERSE = np.float32(1 / _INT16_SCALE)


def pcm16_to_float32(data: bytes) -> Float32Array:
    """Decode PCM16 little-endian bytes to float32 in [-1, 1).

    Scaling by 1/32768 (not 1/32767) keeps the mapping exact and invertible for every int16
    (a power of two: multiplying is exact).
    """
    return as_float32(pcm16_view(data))


def pcm16_view(data: bytes) -> Int16Array:
    """PCM16 little-endian bytes as int16 samples, without a copy (read-only, like `data`).

    The server keeps received audio in this form until a step gathers it: `to_float32_into`
    then converts a whole batch in one pass instead of each message on its own.
    """
    if len(data) % SAMPLE_WIDTH_BYTES:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2")


def to_float32_into(pcm: Int16Array, out: Float32Array) -> Float32Array:
    """Write int16 samples into `out` as float32, with exactly `pcm16_to_float32`'s values."""
    return np.multiply(pcm, _INT16_INVERSE, out=out)


def as_float32(samples: SampleArray) -> Float32Array:
    """Float32 samples of either form (int16 samples are scaled as `pcm16_to_float32` does)."""
    if samples.dtype.kind == "i":
        return to_float32_into(samples.astype(np.int16, copy=False), np.empty(samples.shape, np.float32))
    return samples.astype(np.float32, copy=False)


def float32_to_pcm16(samples: npt.ArrayLike) -> bytes:
    """Encode float samples to PCM16 little-endian, clipping to the int16 range."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * _INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


class FrameAssembler:
    """Turns chunks of any size into exact 1920-sample frames, carrying the remainder.

    Clients send whatever chunking their audio stack produces; the engine needs frames
    aligned to the start of the stream, so no sample may be dropped or duplicated here.
    Chunks are int16 (PCM16, unscaled: see `pcm16_view`) or float32 samples; frames keep
    their chunk's type, and a stream that mixes both gets float32 frames where a frame would
    hold both (its int16 samples scaled exactly as `pcm16_to_float32` does).
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self._frame = frame_samples
        self._rest: SampleArray = np.zeros(0, dtype=np.int16)
        self.samples_in = 0
        """Samples received so far (the stream's true audio length)."""

    @property
    def pending_samples(self) -> int:
        """Samples held back until the next chunk completes a frame."""
        return int(self._rest.size)

    def push(self, samples: SampleArray) -> SampleArray:
        """Add samples; return the complete frames now available, shape (n, frame_samples),
        a view of `samples` itself when nothing was held back."""
        self.samples_in += int(samples.size)
        rest = self._rest
        buf: SampleArray
        if not rest.size:
            buf = samples
        elif rest.dtype.kind == "i" and samples.dtype.kind == "i":
            buf = np.concatenate((rest.astype(np.int16, copy=False), samples.astype(np.int16, copy=False)))
        else:
            buf = np.concatenate((as_float32(rest), as_float32(samples)))
        n = buf.size // self._frame
        whole = n * self._frame
        self._rest = buf[whole:].copy()  # a copy: a view would keep the whole chunk alive
        return buf[:whole].reshape(n, self._frame)

    def take_remainder(self) -> SampleArray:
        """Hand over the samples that do not fill a frame yet (fewer than frame_samples)."""
        rest, self._rest = self._rest, np.zeros(0, dtype=np.int16)
        return rest


def split_frames(samples: Float32Array) -> tuple[Float32Array, Float32Array]:
    """Split a whole clip into (n, FRAME_SAMPLES) frames and the remaining partial tail."""
    flat = np.asarray(samples, dtype=np.float32).reshape(-1)
    whole = flat.size // FRAME_SAMPLES * FRAME_SAMPLES
    return flat[:whole].reshape(-1, FRAME_SAMPLES), flat[whole:]


def to_mono(samples: npt.NDArray[np.floating]) -> Float32Array:
    """Average channels of a (frames, channels) array; pass mono through."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.ndim != 2:
        raise ValueError(f"expected (frames,) or (frames, channels) audio, got shape {samples.shape}")
    mixed: Float32Array = samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    return mixed


def resample(samples: Float32Array, rate: int, target_rate: int = SAMPLE_RATE) -> Float32Array:
    """Resample mono float audio with soxr (high quality), a no-op at the target rate."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    out = soxr.resample(samples.astype(np.float32, copy=False), rate, target_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def read_audio(source: str | Path | BinaryIO) -> Float32Array:
    """Decode an audio file (WAV, FLAC, OGG, MP3, ...) to 24 kHz mono float32.

    Raises ValueError with the decoder's reason when the data is not audio it can read.
    """
    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"cannot decode audio: {exc}") from exc
    return resample(to_mono(data), int(rate))


class AudioDecoder:
    """Decodes a file block by block to 24 kHz mono float32: soundfile reads `block_s` of the
    file at a time and a streaming soxr resampler carries its state across blocks, so memory
    holds one block whatever the file's length (a 30-minute upload is never decoded whole).

    Opening reads the header and raises ValueError when the data is not audio it can read;
    `read` raises ValueError too for a file that turns out to be damaged further on. Not
    thread-safe: one caller at a time (a worker thread, block after block).
    """

    def __init__(self, source: str | Path | BinaryIO, *, block_s: float = 2.0) -> None:
        try:
            self._file = soundfile.SoundFile(source)
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
            raise ValueError(f"cannot decode audio: {exc}") from exc
        self.rate = int(self._file.samplerate)
        self._block = max(1, round(block_s * self.rate))
        self._resampler = (
            None if self.rate == SAMPLE_RATE else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, quality="HQ")
        )
        self.finished = False
        """The whole file has been returned (the next `read` returns nothing)."""

    def read(self) -> Float32Array:
        """The next block at 24 kHz (after the last block, empty arrays)."""
        if self.finished:
            return np.zeros(0, dtype=np.float32)
        try:
            data = self._file.read(self._block, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            self.close()
            raise ValueError(f"cannot decode audio: {exc}") from exc
        last = data.shape[0] < self._block
        mono = to_mono(data)
        if self._resampler is not None:
            mono = np.asarray(self._resampler.resample_chunk(mono, last=last), dtype=np.float32)
        if last:
            self.close()
        return mono

    def close(self) -> None:
        self.finished = True
        self._file.close()


def write_wav(path: str | Path, samples: Float32Array, rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples as a PCM16 WAV file."""
    soundfile.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype="PCM_16")
