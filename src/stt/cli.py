"""The `stt` command: serve, transcribe, engines, keys, tones, samples, stress.

Parsing is kept apart from doing (as in uvicorn: CLI -> Settings -> server). Every server
setting is a flag and an `STT_*` environment variable; flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from stt.config import ClientSettings, Option, Settings, options, parse
from stt.constants import SAMPLE_RATE

log = logging.getLogger("stt")


def _add_settings_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    for option in options(cls):
        shown = option.unset if option.default is None else repr(option.default)
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=_flag_parser(option),
            default=argparse.SUPPRESS,  # only the flags given override the environment
            metavar=option.type.__name__.upper(),
            help=f"{option.help} (env {option.env}, default {shown})",
        )


def _flag_parser(option: Option) -> Any:
    """The settings' one parser, its error shown by argparse as `argument --flag: ...`."""

    def parse_flag(raw: str) -> Any:
        try:
            return parse(option, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse_flag


def _settings_overrides(args: argparse.Namespace, cls: type[Any]) -> dict[str, Any]:
    return {o.name: getattr(args, o.name) for o in options(cls) if hasattr(args, o.name)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stt", description="Streaming speech-to-text server and tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the WebSocket/HTTP server")
    _add_settings_flags(serve, Settings)

    transcribe = sub.add_parser("transcribe", help="stream an audio file to a server and print the words")
    transcribe.add_argument("file", type=Path, help="audio file (WAV, FLAC, OGG, MP3, ...; any rate)")
    _add_settings_flags(transcribe, ClientSettings)
    pace = transcribe.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", help="pace chunks in real time")
    pace.add_argument(
        "--fast", dest="realtime", action="store_false", help="send as fast as possible (default)"
    )
    transcribe.add_argument("--language", default=None, help="language hint, e.g. en or fr")
    transcribe.add_argument("--chunk-ms", type=int, default=480, help="chunk size in ms (default 480)")
    transcribe.add_argument("--eos", action="store_true", help="end with the 3-byte EOS message")
    transcribe.add_argument("--json", action="store_true", help="print the Final message as JSON")

    engines = sub.add_parser("engines", help="list engines and whether each can load here")
    _add_settings_flags(engines, Settings)

    keys = sub.add_parser("keys", help="make API keys and the hashed lines of an API keys file")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new random key and its hashed line")
    new.add_argument("--label", default=None, help="label for the key (shown in logs and metrics)")
    hashed = keys_sub.add_parser("hash", help="print the hashed line of an existing key")
    hashed.add_argument("key")
    hashed.add_argument("--label", default=None, help="label for the key")

    tones = sub.add_parser("tones", help="write a tone-coded WAV that the fake engine transcribes")
    tones.add_argument("text", help="words to encode (letters, digits and apostrophes)")
    tones.add_argument("-o", "--output", type=Path, required=True, help="output WAV path")

    _add_samples_parser(sub)
    _add_stress_parser(sub)
    return parser


def _add_samples_parser(sub: Any) -> None:
    samples = sub.add_parser("samples", help="build sample sets (24 kHz WAV + reference text + manifest)")
    samples_sub = samples.add_subparsers(dest="samples_command", required=True)
    prepare = samples_sub.add_parser(
        "prepare", help="convert any audio to 24 kHz mono WAV with references and manifest.jsonl"
    )
    prepare.add_argument("--in-dir", type=Path, required=True, help="directory of audio files (recursive)")
    prepare.add_argument("--out-dir", type=Path, default=Path("samples"), help="output (default samples)")
    prepare.add_argument(
        "--engine",
        default="whisper",
        help="reference engine for files without a sidecar .txt (default whisper; see `stt engines`)",
    )
    prepare.add_argument("--lang", default=None, help="language of files without a sidecar .lang")
    prepare.add_argument("--workers", type=int, default=4, help="parallel conversions (default 4)")
    tone_set = samples_sub.add_parser("tones", help="write a tone-coded set the fake engine transcribes")
    tone_set.add_argument("--out-dir", type=Path, required=True, help="output directory")
    tone_set.add_argument("--count", type=int, default=20, help="number of clips (default 20)")


def _add_stress_parser(sub: Any) -> None:
    stress = sub.add_parser("stress", help="many concurrent streams from a manifest, each checked")
    _add_settings_flags(stress, ClientSettings)
    stress.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl (stt samples)")
    stress.add_argument("--concurrency", type=int, default=10, help="streams at once (default 10)")
    stress.add_argument("--streams", type=int, default=None, help="streams in all (default: concurrency)")
    stress.add_argument("--chunk-ms", type=int, default=480, help="chunk size in ms (default 480)")
    stress.add_argument("--realtime", action="store_true", help="pace every stream in real time")
    stress.add_argument("--wer-max", type=float, default=None, help="fail a stream above this WER")
    stress.add_argument(
        "--cross-talk-min",
        type=int,
        default=1,
        help="foreign words (only in other streams' references) that fail a stream (default 1)",
    )
    stress.add_argument(
        "--ramp-s", type=float, default=0.0, help="spread the first streams' starts over this long"
    )
    stress.add_argument("--eos", action="store_true", help="end streams with the 3-byte EOS message")
    stress.add_argument("--no-language", action="store_true", help="do not send the manifest's language")
    stress.add_argument("--json-out", type=Path, default=None, help="write the full report as JSON")
    stress.add_argument("--quiet", action="store_true", help="print only the summary, not every stream")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "transcribe":
            return _transcribe(args)
        if args.command == "engines":
            return _engines(args)
        if args.command == "tones":
            return _tones(args)
        if args.command == "keys":
            return _keys(args)
        if args.command == "samples":
            return _samples(args)
        if args.command == "stress":
            return _stress(args)
    except ValueError as exc:  # invalid settings or input: one clear line, no traceback
        print(f"stt: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.command)


def _serve(args: argparse.Namespace) -> int:
    from stt.engine.registry import EngineUnavailableError, build_engine
    from stt.logs import configure_logging
    from stt.server.app import run_server

    settings = Settings.from_env(**_settings_overrides(args, Settings))
    configure_logging(settings.log.level, settings.log.format)
    try:
        engine = build_engine(settings)  # fail fast, before binding the port
    except EngineUnavailableError as exc:
        print(f"stt: error: {exc}", file=sys.stderr)
        return 3
    run_server(settings, engine)
    return 0


def _engines(args: argparse.Namespace) -> int:
    from stt.engine.registry import probe_all

    settings = Settings.from_env(**_settings_overrides(args, Settings))
    for spec, availability in probe_all(settings):
        mark = "yes" if availability.ok else "no "
        default = " (configured)" if spec.name == settings.engine.name else ""
        print(f"{spec.name:<8} {mark} {spec.summary}{default}\n         {availability.detail}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from stt.server.auth import hashed_line, new_key

    if args.keys_command == "new":
        key = new_key()
        print(f"key:         {key}")
        print(f"hashed line: {hashed_line(key, args.label)}")
    else:
        print(hashed_line(args.key, args.label))
    return 0


def _tones(args: argparse.Namespace) -> int:
    from stt.audio import write_wav
    from stt.engine.fake.tones import encode_text

    audio = encode_text(args.text, lead_frames=2)
    write_wav(args.output, audio)
    print(f"wrote {args.output} ({audio.size / SAMPLE_RATE:.2f} s)")
    return 0


def _samples(args: argparse.Namespace) -> int:
    from stt.tools.samples import SamplesError, engine_reference, prepare, summary_lines, write_tone_set

    if args.samples_command == "tones":
        rows = write_tone_set(args.out_dir, args.count)
        print(f"wrote {len(rows)} tone-coded clips and {args.out_dir / 'manifest.jsonl'}")
        return 0
    try:
        result = prepare(
            args.in_dir,
            args.out_dir,
            reference=engine_reference(args.engine),
            lang=args.lang,
            workers=args.workers,
        )
    except SamplesError as exc:
        print(f"stt: error: {exc}", file=sys.stderr)
        return 3
    for line in summary_lines(result):
        print(line)
    return 0


def _stress(args: argparse.Namespace) -> int:
    from stt.tools.stress import StressOptions, load_manifest, print_report, run_stress

    client = ClientSettings.from_env(**_settings_overrides(args, ClientSettings))
    options = StressOptions(
        url=client.url,
        concurrency=args.concurrency,
        streams=args.streams,
        chunk_ms=args.chunk_ms,
        realtime=args.realtime,
        wer_max=args.wer_max,
        cross_talk_min=args.cross_talk_min,
        end_marker="EOS" if args.eos else "CloseStream",
        send_language=not args.no_language,
        ramp_s=args.ramp_s,
        headers={"Authorization": f"Bearer {client.api_key}"} if client.api_key else None,
    )
    report = asyncio.run(run_stress(options, load_manifest(args.manifest)))
    print_report(report, sys.stdout, per_stream=not args.quiet)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return 0 if report.passed else 1


class _LiveLine:
    """Shows words as they arrive. On a terminal, one live line with a progress bar and the
    latest words; elsewhere (pipes, logs), each word is written as soon as it comes."""

    def __init__(self, total_s: float, out: TextIO = sys.stdout) -> None:
        self._total_s = total_s
        self._out = out
        self._tty = out.isatty()
        self._words: list[str] = []
        self._sent_s = 0.0

    def word(self, text: str) -> None:
        self._words.append(text)
        if self._tty:
            self._render()
        else:
            self._out.write(("" if len(self._words) == 1 else " ") + text)
            self._out.flush()

    def progress(self, sent_s: float) -> None:
        self._sent_s = sent_s
        if self._tty:
            self._render()

    def _render(self) -> None:
        width = 20
        done = int(width * min(1.0, self._sent_s / max(self._total_s, 1e-9)))
        bar = f"[{'=' * done}{' ' * (width - done)}] {self._sent_s:5.1f}/{self._total_s:.1f} s  "
        tail = " ".join(self._words)[-(shutil.get_terminal_size().columns - len(bar) - 1) :]
        self._out.write(f"\r\x1b[K{bar}{tail}")
        self._out.flush()

    def end(self) -> None:
        """Leave the words (not the bar) on screen, ending the line."""
        if self._tty:
            self._out.write("\r\x1b[K" + " ".join(self._words))
        if self._words or self._tty:
            self._out.write("\n")
        self._out.flush()


def _transcribe(args: argparse.Namespace) -> int:
    from websockets.exceptions import InvalidStatus

    from stt.audio import read_audio
    from stt.tools.client import Received, stream_audio

    client = ClientSettings.from_env(**_settings_overrides(args, ClientSettings))
    samples = read_audio(args.file)
    total_s = samples.size / SAMPLE_RATE
    line = _LiveLine(total_s)

    def on_message(received: Received) -> None:
        message = received.message
        if message.get("type") == "Word":
            line.word(str(message["text"]))
        elif message.get("type") == "Error":
            line.end()
            print(f"stt: server error {message.get('code')}: {message.get('message')}", file=sys.stderr)

    try:
        result = asyncio.run(
            stream_audio(
                client.url,
                samples,
                chunk_samples=max(1, args.chunk_ms * SAMPLE_RATE // 1000),
                realtime=args.realtime,
                language=args.language,
                end_marker="EOS" if args.eos else "CloseStream",
                headers={"Authorization": f"Bearer {client.api_key}"} if client.api_key else None,
                on_message=on_message,
                on_sent=line.progress,
            )
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        hint = " (set --api-key or STT_API_KEY)" if status == 401 else ""
        print(f"stt: error: the server refused the stream with HTTP {status}{hint}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(
            f"stt: error: cannot connect to {client.url} ({exc}); start a server with `make serve` "
            "or point --url at one",
            file=sys.stderr,
        )
        return 3
    line.end()
    final = result.final
    if final is None:
        print(f"stt: no Final received (close code {result.close_code})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(final, ensure_ascii=False))
    else:
        print(f"transcript: {final['transcript']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
