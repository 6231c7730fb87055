"""The loop-only counter and histogram render exactly as prometheus_client's own."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from stt.metrics import LoopCounter, LoopHistogram, Metrics


def _without_timestamps(text: str) -> str:
    return re.sub(r"_created (\S+)", "_created T", text)


def test_loop_series_render_as_prometheus_clients_own() -> None:
    buckets = (0.05, 0.1, 1.0, 10.0)
    values = [0.0, 0.01, 0.05, 0.0500001, 0.1, 0.3, 2.5, 10.0, 11.0, 0.75]
    theirs, ours = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    histograms = (
        Histogram("x_seconds", "a histogram", buckets=buckets, registry=theirs),
        LoopHistogram("x_seconds", "a histogram", buckets=buckets, registry=ours),
    )
    counters = (Counter("y", "a counter", registry=theirs), LoopCounter("y", "a counter", registry=ours))
    for value in values:
        for histogram in histograms:
            histogram.observe(value)
        for counter in counters:
            counter.inc(value)
    expected = _without_timestamps(generate_latest(theirs).decode())
    assert 'x_seconds_bucket{le="0.05"} 3.0' in expected  # a value on a bound counts in its bucket
    assert _without_timestamps(generate_latest(ours).decode()) == expected
    assert histograms[1].count == len(values) and histograms[1].sum == pytest.approx(sum(values))


def test_a_loop_counter_only_increases() -> None:
    counter = LoopCounter("z", "a counter", registry=CollectorRegistry())
    with pytest.raises(ValueError):
        counter.inc(-1)


def test_the_servers_series_keep_their_names() -> None:
    metrics = Metrics()
    metrics.audio_seconds.inc(0.48)
    metrics.words.inc(2)
    metrics.word_latency.observe(0.07)
    metrics.stream_backlog.observe(0.2)
    text = metrics.render().decode()
    for line in (
        "stt_audio_seconds_total 0.48",
        "stt_words_total 2.0",
        'stt_word_latency_seconds_bucket{le="0.1"} 1.0',
        "stt_word_latency_seconds_count 1.0",
        'stt_stream_backlog_seconds_bucket{le="0.32"} 1.0',
    ):
        assert line in text
