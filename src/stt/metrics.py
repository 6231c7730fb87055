"""Prometheus metrics, on a registry of their own (not the process-global default).

A private registry keeps two apps in one process (tests, embedding) from colliding and
exports only what this server means. Gauges that describe current state (slots, open
streams, backlog) are computed at scrape time from callbacks, so they can never drift.

The series updated per audio message or per word (audio seconds, backlog, words, word
latency) are `LoopCounter` and `LoopHistogram`: plain float adds, read at scrape time, since
prometheus_client takes a lock per update (thousands per second at 1000 streams) and every
update here happens on the event loop. They render exactly as prometheus_client's own.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_le_label = cast(Callable[[float], str], floatToGoString)
"""A bucket bound as prometheus_client writes it (`+Inf`, `0.05`, `1.0`)."""

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.25, 0.5, 1.0, 2.5)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_BACKLOG_BUCKETS = (0.08, 0.16, 0.32, 0.64, 1.0, 2.0, 4.0, 8.0, 16.0)


class Metrics:
    """Every series the server exports. Observed on the event loop only."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.streams_open = Gauge("stt_streams_open", "WebSocket streams currently open", registry=r)
        self.slots_used = Gauge("stt_slots_used", "Engine slots held by streams", registry=r)
        self.slots_total = Gauge("stt_slots_total", "Engine slots (maximum concurrent streams)", registry=r)
        self.backlog_total = Gauge(
            "stt_backlog_seconds_total", "Audio received but not yet stepped, all streams", registry=r
        )
        self.accepting = Gauge(
            "stt_accepting", "1 while new streams are accepted, 0 when draining", registry=r
        )
        self.step_seconds = Histogram(
            "stt_engine_step_seconds", "Duration of one engine step", buckets=_STEP_BUCKETS, registry=r
        )
        self.step_rows = Histogram(
            "stt_batch_rows",
            "Streams advanced per engine step (batch occupancy)",
            buckets=_ROW_BUCKETS,
            registry=r,
        )
        self.batch_occupancy = Gauge(
            "stt_batch_occupancy_ratio", "Rows of the last step divided by slots", registry=r
        )
        self.frames = Counter("stt_frames", "80 ms frames processed by the engine", registry=r)
        self.audio_seconds = LoopCounter("stt_audio_seconds", "Seconds of client audio received", registry=r)
        self.words = LoopCounter("stt_words", "Words sent to clients", registry=r)
        self.first_word_latency = Histogram(
            "stt_first_word_latency_seconds",
            "First word of a stream: sent minus arrival of the audio that ends it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.word_latency = LoopHistogram(
            "stt_word_latency_seconds",
            "Any word: sent minus arrival of the audio that ends it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "stt_final_latency_seconds",
            "End of stream received -> Final sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_backlog = LoopHistogram(
            "stt_stream_backlog_seconds",
            "Per-stream audio waiting for the model, observed on each audio message",
            buckets=_BACKLOG_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "stt_rejections", "Connections refused before a stream started", ["reason"], registry=r
        )
        self.closes = Counter("stt_stream_closes", "Streams closed, by reason", ["reason"], registry=r)
        self.errors = Counter("stt_errors", "Error messages sent, by code", ["code"], registry=r)

    def bind_state(
        self,
        *,
        slots_used: Callable[[], float],
        slots_total: Callable[[], float],
        streams_open: Callable[[], float],
        backlog_s: Callable[[], float],
        accepting: Callable[[], float],
    ) -> None:
        """Point the state gauges at the live objects they describe."""
        self.slots_used.set_function(slots_used)
        self.slots_total.set_function(slots_total)
        self.streams_open.set_function(streams_open)
        self.backlog_total.set_function(backlog_s)
        self.accepting.set_function(accepting)

    def bind_engine_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Export the engine's own monotonic counts (read at scrape time)."""
        self.registry.register(_EngineCounters(counters))

    def observe_step(self, seconds: float, rows: int, slots: int) -> None:
        self.step_seconds.observe(seconds)
        self.step_rows.observe(rows)
        self.batch_occupancy.set(rows / max(1, slots))
        self.frames.inc(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LoopCounter(Collector):
    """A counter updated on one thread only (the event loop): `inc` is a float add."""

    def __init__(self, name: str, documentation: str, *, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._created = time.time()
        self.value = 0.0
        registry.register(self)

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters can only increase")
        self.value += amount

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.value, created=self._created)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation)


class LoopHistogram(Collector):
    """A histogram updated on one thread only (the event loop): `observe` is a bisect and
    two adds; the cumulative buckets are summed at scrape time."""

    def __init__(
        self, name: str, documentation: str, *, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._created = time.time()
        self._bounds = bounds
        self._counts = [0] * len(bounds)
        self.sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self.sum += amount

    @property
    def count(self) -> int:
        return sum(self._counts)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation)
        cumulative, buckets = 0, []
        for bound, count in zip(self._bounds, self._counts, strict=True):
            cumulative += count
            buckets.append((_le_label(bound), float(cumulative)))
        family.add_metric([], buckets, self.sum)
        family.samples.append(Sample(f"{self._name}_created", {}, self._created))
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)


_ENGINE_SERIES = {"context_refreshes": "Kyutai: slot LM contexts restarted (long streams, at pauses)"}
"""Counters engines may keep themselves (`CountingEngine`), by name: help text."""


class _EngineCounters(Collector):
    """Counters the engine keeps itself; 0 for engines that do not keep them."""

    def __init__(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        values = self._counters()
        for name, doc in _ENGINE_SERIES.items():
            yield CounterMetricFamily(f"stt_{name}", doc, value=values.get(name, 0))

    def describe(self) -> Iterator[Metric]:
        for name, doc in _ENGINE_SERIES.items():
            yield CounterMetricFamily(f"stt_{name}", doc)
