"""A file through a scheduler slot: words as they come, bounded read-ahead, early exit."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
import soundfile

from stt.audio import AudioDecoder, Float32Array
from stt.constants import FRAME_SAMPLES, SAMPLE_RATE
from stt.engine.fake.engine import FakeEngine
from stt.engine.fake.tones import encode_text
from stt.file_transcription import BadAudioError, transcribe_file
from stt.scheduler import Scheduler

BLOCK = 10 * FRAME_SAMPLES


class BlockDecoder:
    """Hands out `audio` a block at a time and records how far it was read."""

    def __init__(self, audio: Float32Array, *, fail_at: int | None = None) -> None:
        self.audio = audio
        self.position = 0
        self.reads = 0
        self.fail_at = fail_at
        self.finished = False
        self.closed = threading.Event()

    def read(self) -> Float32Array:
        self.reads += 1
        if self.reads == self.fail_at:
            raise ValueError("damaged frame")
        block = self.audio[self.position : self.position + BLOCK]
        self.position += block.size
        self.finished = self.position >= self.audio.size
        return block

    def close(self) -> None:
        self.finished = True
        self.closed.set()


def many_words(n: int) -> str:
    return " ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(n))


async def started(engine: FakeEngine) -> Scheduler:
    scheduler = Scheduler(engine)
    await scheduler.start(warmup=False)
    return scheduler


def test_words_come_in_order_with_the_files_duration() -> None:
    text = many_words(60)
    audio = encode_text(text)

    async def main() -> tuple[list[str], float, bool]:
        scheduler = await started(FakeEngine(slots=1))
        decoder = BlockDecoder(audio)
        try:
            async with transcribe_file(scheduler, decoder, slot_wait_s=0) as job:
                words = [w.text async for w in job.words()]
            return words, job.duration_s, decoder.closed.is_set()
        finally:
            await scheduler.stop()

    words, duration, closed = asyncio.run(main())
    assert " ".join(words) == text
    assert duration == pytest.approx(audio.size / SAMPLE_RATE) and closed


def test_the_file_is_read_only_a_little_ahead_of_the_engine() -> None:
    audio = encode_text(many_words(300))  # 1200 frames: 120 blocks

    async def main() -> tuple[int, int]:
        scheduler = await started(FakeEngine(slots=1, step_cost_s=0.001))
        decoder = BlockDecoder(audio)
        try:
            async with transcribe_file(scheduler, decoder, slot_wait_s=0, ahead_s=2.0) as job:
                reads_at_first_word = -1
                async for _ in job.words():
                    if reads_at_first_word < 0:
                        reads_at_first_word = decoder.reads
            return reads_at_first_word, decoder.reads
        finally:
            await scheduler.stop()

    at_first_word, total = asyncio.run(main())
    # 2 s ahead is 25 frames, under 3 blocks; the first word comes after 4 frames.
    assert at_first_word <= 5 < total, (at_first_word, total)


def test_leaving_early_frees_the_slot_and_closes_the_decoder() -> None:
    audio = encode_text(many_words(300))

    async def main() -> tuple[int, int, bool]:
        scheduler = await started(FakeEngine(slots=1, step_cost_s=0.001))
        decoder = BlockDecoder(audio)
        try:
            async with transcribe_file(scheduler, decoder, slot_wait_s=0) as job:
                async for _ in job.words():
                    break
                assert scheduler.used_slots == 1
            closed = await asyncio.to_thread(decoder.closed.wait, 10)
            return scheduler.used_slots, decoder.position, closed
        finally:
            await scheduler.stop()

    used, position, closed = asyncio.run(main())
    assert used == 0 and closed and position < audio.size


def test_a_file_damaged_further_on_raises_after_its_first_words() -> None:
    audio = encode_text(many_words(40))

    async def main() -> list[str]:
        scheduler = await started(FakeEngine(slots=1))
        words: list[str] = []
        try:
            async with transcribe_file(scheduler, BlockDecoder(audio, fail_at=8), slot_wait_s=0) as job:
                with pytest.raises(BadAudioError, match="damaged"):
                    async for word in job.words():
                        words.append(word.text)
            assert scheduler.used_slots == 0
            return words
        finally:
            await scheduler.stop()

    words = asyncio.run(main())
    assert 0 < len(words) < 40


def wav(samples: Float32Array, rate: int, channels: int = 1) -> io.BytesIO:
    data = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, format="WAV", subtype="FLOAT")
    buffer.seek(0)
    return buffer


def read_all(decoder: AudioDecoder) -> Float32Array:
    blocks = []
    while not decoder.finished:
        blocks.append(decoder.read())
    return np.concatenate(blocks)


def test_the_decoder_gives_the_whole_file_block_by_block() -> None:
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, SAMPLE_RATE * 5 + 123).astype(np.float32)
    assert np.array_equal(read_all(AudioDecoder(wav(samples, SAMPLE_RATE, 2), block_s=0.3)), samples)
    tone = np.sin(2 * np.pi * 440 * np.arange(16_000 * 3) / 16_000).astype(np.float32)
    resampled = read_all(AudioDecoder(wav(tone, 16_000), block_s=0.25))
    assert abs(resampled.size - 3 * SAMPLE_RATE) <= 1
    expected = np.sin(2 * np.pi * 440 * np.arange(resampled.size) / SAMPLE_RATE)
    assert np.max(np.abs(resampled[1000:-1000] - expected[1000:-1000])) < 1e-3


def test_the_decoder_refuses_what_is_not_audio() -> None:
    with pytest.raises(ValueError, match="cannot decode audio"):
        AudioDecoder(io.BytesIO(b"not audio" * 100))
