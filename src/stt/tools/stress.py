"""The stress client: many concurrent streams from a manifest, each one checked.

Every stream must get its own words back: its WER against its reference stays under the
bound, and its transcript holds no word that occurs only in *other* streams' references
(cross-talk: a batching or routing bug hands one stream another's words). Latencies are
measured in the audio's own timeline by the shared client (`stt.tools.client`): first word = the
first Word's arrival minus when the audio up to that word's end had been sent; final = the
Final's arrival minus when the end of stream was sent. Only the documented protocol is
used, so it runs against any server that speaks it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
from websockets.exceptions import WebSocketException

from stt.constants import SAMPLE_RATE
from stt.tools.client import EndMarker, StreamResult, stream_audio
from stt.tools.samples import read_manifest
from stt.tools.wer import WerStats, normalize, word_errors


@dataclass(frozen=True)
class Sample:
    id: str
    path: Path
    ref_text: str
    lang: str | None
    duration_s: float


NO_LANGUAGE = ("", "none", "null", "-")
"""Manifest `lang` values meaning "no speech / no language" (the shared silence clip says "none")."""


def _language(value: object) -> str | None:
    """A manifest's `lang`, or None where the clip has no language to hint."""
    if value is None or str(value).strip().lower() in NO_LANGUAGE:
        return None
    return str(value)


def load_manifest(path: Path) -> list[Sample]:
    """Samples of a manifest.jsonl; audio paths are relative to the manifest's directory."""
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist (make one with `stt samples prepare`)")
    samples = []
    for n, row in enumerate(read_manifest(path), 1):
        try:
            wav = path.parent / str(row["wav24k_path"])
            samples.append(
                Sample(
                    str(row["id"]),
                    wav,
                    str(row["ref_text"]),
                    _language(row.get("lang")),
                    float(row["duration_s"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{n}: bad manifest row ({exc!r})") from None
        if not wav.is_file():
            raise ValueError(f"{path}:{n}: audio file {wav} does not exist")
    if not samples:
        raise ValueError(f"{path} lists no samples")
    return samples


@dataclass(frozen=True)
class StressOptions:
    url: str
    concurrency: int = 10
    streams: int | None = None
    """Streams in all, samples cycled (default: `concurrency`)."""
    chunk_ms: int = 480
    realtime: bool = False
    wer_max: float | None = None
    cross_talk_min: int = 1
    """Foreign words that fail a stream; real recognisers may hit another reference's word by
    mistake, so a noisy engine may warrant 2 or more (they are reported either way)."""
    end_marker: EndMarker = "CloseStream"
    send_language: bool = True
    headers: Mapping[str, str] | None = None
    final_timeout_s: float = 60.0
    ramp_s: float = 0.0
    """Spread the first `concurrency` starts over this long, so an autoscaled deployment sees
    a ramp instead of one burst (later streams start as earlier ones end)."""

    def __post_init__(self) -> None:
        if self.ramp_s < 0:
            raise ValueError("ramp_s must be >= 0")
        if self.concurrency < 1 or (self.streams is not None and self.streams < 1):
            raise ValueError("concurrency and streams must be >= 1")
        if self.cross_talk_min < 1:
            raise ValueError("cross_talk_min must be >= 1")
        if self.chunk_ms < 1:
            raise ValueError("chunk_ms must be >= 1")


@dataclass
class StreamReport:
    index: int
    sample_id: str
    lang: str | None
    reference: str
    transcript: str = ""
    wer: float = 1.0
    reference_words: int = 0
    cross_talk: list[str] = field(default_factory=list)
    first_word_s: float | None = None
    final_latency_s: float | None = None
    final_status: str | None = None
    close_code: int | None = None
    error: str | None = None
    started_s: float = 0.0
    """When the stream connected, in seconds from the start of the run."""
    connected: bool = True
    """False when the stream was refused or broke off (no transcript to score)."""
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class StressReport:
    options: StressOptions
    streams: list[StreamReport]
    wall_s: float
    corpus: WerStats = field(default_factory=WerStats)

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.streams)

    @property
    def failed(self) -> list[StreamReport]:
        return [s for s in self.streams if not s.passed]

    def percentiles(self, values: Sequence[float | None]) -> dict[str, float | None]:
        xs = np.array([v for v in values if v is not None], dtype=np.float64)
        if xs.size == 0:
            return {"p50": None, "p95": None, "p99": None}
        return {f"p{q}": float(np.percentile(xs, q)) for q in (50, 95, 99)}

    def to_dict(self) -> dict[str, Any]:
        opts = asdict(self.options)
        opts.pop("headers")  # may hold an API key
        return {
            "options": opts,
            "passed": self.passed,
            "streams_total": len(self.streams),
            "streams_failed": len(self.failed),
            "wall_s": self.wall_s,
            "corpus_wer": self.corpus.wer,
            "first_word_s": self.percentiles([s.first_word_s for s in self.streams]),
            "final_latency_s": self.percentiles([s.final_latency_s for s in self.streams]),
            "errors": sum(s.error is not None for s in self.streams),
            "cross_talk_streams": sum(bool(s.cross_talk) for s in self.streams),
            "streams": [{**asdict(s), "passed": s.passed} for s in self.streams],
        }


async def run_stress(options: StressOptions, samples: Sequence[Sample]) -> StressReport:
    """Run `streams` streams, at most `concurrency` at once, and check each."""
    from stt.audio import read_audio

    total = options.streams or options.concurrency
    chosen = [samples[i % len(samples)] for i in range(total)]
    audio: dict[Path, npt.NDArray[np.float32]] = {}
    for sample in chosen:
        if sample.path not in audio:
            audio[sample.path] = read_audio(sample.path)
    vocab = {s.id: set(normalize(s.ref_text, s.lang).split()) for s in chosen}
    gate = asyncio.Semaphore(options.concurrency)
    started = time.perf_counter()

    async def one(index: int, sample: Sample) -> StreamReport:
        if index < options.concurrency and options.ramp_s > 0:
            await asyncio.sleep(options.ramp_s * index / options.concurrency)
        async with gate:
            report = StreamReport(index, sample.id, sample.lang, sample.ref_text)
            report.started_s = time.perf_counter() - started
            try:
                result = await stream_audio(
                    options.url,
                    audio[sample.path],
                    chunk_samples=max(1, options.chunk_ms * SAMPLE_RATE // 1000),
                    realtime=options.realtime,
                    language=sample.lang if options.send_language else None,
                    end_marker=options.end_marker,
                    headers=options.headers,
                    final_timeout_s=options.final_timeout_s,
                )
            # refused, reset, an HTTP error status, no Final in time
            except (OSError, TimeoutError, WebSocketException) as exc:
                report.connected = False
                report.error = f"{type(exc).__name__}: {exc}"
                report.failures.append(f"connection: {report.error}")
                return report
            others = set().union(*(v for k, v in vocab.items() if k != sample.id))
            check_stream(report, result, vocab[sample.id], others, options.wer_max, options.cross_talk_min)
            return report

    reports = await asyncio.gather(*(one(i, s) for i, s in enumerate(chosen)))
    wall = time.perf_counter() - started
    corpus = sum((word_errors(r.reference, r.transcript, r.lang) for r in reports if r.connected), WerStats())
    return StressReport(options, list(reports), wall, corpus)


def check_stream(
    report: StreamReport,
    result: StreamResult,
    own_words: set[str],
    other_words: set[str],
    wer_max: float | None,
    cross_talk_min: int = 1,
) -> None:
    """Fill `report` from what the stream received and list why it fails, if it does."""
    report.close_code = result.close_code
    report.connected = result.ready is not None  # refused streams have no transcript to score
    error = result.error
    if error is not None:
        report.error = f"{error.get('code')}: {error.get('message')}"
        report.failures.append(f"server error {report.error}")
    final = result.final
    if final is None:
        report.failures.append(f"no Final (close code {result.close_code})")
    else:
        report.final_status = str(final.get("status", "complete"))
        if report.final_status != "complete":
            report.failures.append(f"Final status {report.final_status}")
    report.transcript = result.transcript
    stats = word_errors(report.reference, report.transcript, report.lang)
    report.wer = stats.wer
    report.reference_words = stats.reference_words
    if wer_max is not None and report.wer > wer_max:
        report.failures.append(f"WER {report.wer:.3f} > {wer_max:g}")
    hypothesis = normalize(report.transcript, report.lang).split()
    report.cross_talk = sorted({w for w in hypothesis if w not in own_words and w in other_words})
    if len(report.cross_talk) >= cross_talk_min:
        report.failures.append(f"cross-talk: {' '.join(report.cross_talk)}")
    report.first_word_s, report.final_latency_s = latencies(result)


def latencies(result: StreamResult) -> tuple[float | None, float | None]:
    """(first-word latency, end-of-stream-to-Final latency) in seconds, when measurable."""
    first = None
    end_sent = result.sent[-1][1] if result.sent else None
    for received in result.messages:
        if received.message.get("type") == "Word":
            sent = result.audio_sent_at(float(received.message.get("end_s", 0.0)))
            sent = sent if sent is not None else end_sent
            if sent is not None:
                first = received.at_s - sent
            break
    final = None
    if end_sent is not None:
        finals = [r for r in result.messages if r.message.get("type") == "Final"]
        if finals:
            final = finals[-1].at_s - end_sent
    return first, final


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def print_report(report: StressReport, out: TextIO, *, per_stream: bool = True) -> None:
    """A table of streams (failed ones always) and the summary."""
    shown = report.streams if per_stream else report.failed
    if shown:
        out.write(f"{'#':>4} {'sample':<20} {'lang':<4} {'WER':>6} {'first ms':>8} {'final ms':>8}  result\n")
    for s in shown:
        verdict = "ok" if s.passed else "FAIL " + "; ".join(s.failures)
        out.write(
            f"{s.index:>4} {s.sample_id[:20]:<20} {(s.lang or '-'):<4} {s.wer:>6.3f} "
            f"{_ms(s.first_word_s):>8} {_ms(s.final_latency_s):>8}  {verdict}\n"
        )
    data = report.to_dict()
    first, final = data["first_word_s"], data["final_latency_s"]
    out.write(
        f"\nstreams {len(report.streams)} (concurrency {report.options.concurrency}), "
        f"passed {len(report.streams) - len(report.failed)}, failed {len(report.failed)}, "
        f"errors {data['errors']}, cross-talk {data['cross_talk_streams']}, wall {report.wall_s:.2f} s\n"
        f"corpus WER {report.corpus.wer:.3f} over {report.corpus.reference_words} reference words\n"
        f"first word ms  p50 {_ms(first['p50'])}  p95 {_ms(first['p95'])}  p99 {_ms(first['p99'])}\n"
        f"EOS->Final ms  p50 {_ms(final['p50'])}  p95 {_ms(final['p95'])}  p99 {_ms(final['p99'])}\n"
        f"{'PASS' if report.passed else 'FAIL'}\n"
    )
