from stt import constants as c


def test_wire_format_invariants() -> None:
    assert c.SAMPLE_RATE == 24_000
    assert c.CHANNELS == 1
    assert c.SAMPLE_WIDTH_BYTES == 2


def test_frame_is_80_ms_of_1920_samples() -> None:
    assert c.FRAME_SAMPLES == 1920
    assert c.FRAME_SAMPLES / c.SAMPLE_RATE == 0.08 == c.FRAME_SECONDS


def test_recommended_chunk_is_480_ms() -> None:
    assert c.CHUNK_SAMPLES == 11_520
    assert c.CHUNK_BYTES == 23_040
    assert c.CHUNK_SAMPLES == 6 * c.FRAME_SAMPLES


def test_end_of_stream_marker_is_three_bytes() -> None:
    assert c.END_OF_STREAM_BYTES == b"EOS"
    assert len(c.END_OF_STREAM_BYTES) % 2 == 1  # can never be mistaken for PCM16


def test_whisper_rate_and_hub_ids() -> None:
    assert c.WHISPER_SAMPLE_RATE == 16_000
    assert c.HUB_ID.match("kyutai/stt-1b-en_fr") and c.HUB_ID.match("Systran/faster-whisper-base.en")
    assert not any(c.HUB_ID.match(s) for s in ("stt-1b", "/models/x", "a/b/c", "-a/b"))
