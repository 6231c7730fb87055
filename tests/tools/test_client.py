"""StreamResult's readings of a stream's messages."""

from __future__ import annotations

import pytest

from stt.tools.client import Received, StreamResult


def test_word_latencies_are_arrival_minus_when_the_words_audio_was_sent() -> None:
    result = StreamResult(
        messages=[
            Received({"type": "Ready"}, 0.0),
            Received({"type": "Word", "text": "a", "end_s": 0.4}, 0.9),
            Received({"type": "Word", "text": "b", "end_s": 0.5}, 1.3),
            Received({"type": "Word", "text": "flushed", "end_s": 2.0}, 1.6),
            Received({"type": "Final", "transcript": "a b flushed"}, 1.7),
        ],
        sent=[(0.48, 0.5), (0.96, 1.0)],
    )
    assert result.word_latencies() == pytest.approx([0.4, 0.3])
