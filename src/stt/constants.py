"""Invariants of the audio wire format and the model's frame clock.

Everything else derives from these numbers; they are tested so a change is deliberate.
Kyutai's Mimi codec runs at 12.5 Hz on 24 kHz mono audio, so one model step consumes one
80 ms frame of 1920 samples. Clients are advised to send 480 ms chunks (six frames): large
enough to keep per-message overhead low, small enough to keep latency low.
"""

import re
from typing import Final

SAMPLE_RATE: Final = 24_000
"""Samples per second of every stream on the wire and inside engines."""

WHISPER_SAMPLE_RATE: Final = 16_000
"""What Whisper and the Silero VAD take: the whisper engine resamples each stream to this."""

CHANNELS: Final = 1
"""Mono. Clients mix down before sending."""

SAMPLE_WIDTH_BYTES: Final = 2
"""PCM16 little-endian: two bytes per sample."""

FRAME_MS: Final = 80
FRAME_SAMPLES: Final = SAMPLE_RATE * FRAME_MS // 1000
"""One engine step per stream consumes exactly this many samples (1920)."""

FRAME_SECONDS: Final = FRAME_MS / 1000

CHUNK_MS: Final = 480
CHUNK_SAMPLES: Final = SAMPLE_RATE * CHUNK_MS // 1000
"""The recommended client chunk: 480 ms = 11520 samples."""

CHUNK_BYTES: Final = CHUNK_SAMPLES * SAMPLE_WIDTH_BYTES
"""The recommended client chunk in bytes of PCM16 (23040)."""

END_OF_STREAM_BYTES: Final = b"EOS"
"""A 3-byte binary message that ends the stream, for simple clients that cannot send JSON."""

PROTOCOL_VERSION: Final = 1
"""Version of the WebSocket protocol in docs/protocol.md; bumped on any incompatible change."""

HUB_ID: Final = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""A Hugging Face hub model id (owner/name), as `--model` and `STT_MODAL_MODEL` accept it."""
