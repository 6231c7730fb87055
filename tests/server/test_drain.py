"""SIGTERM to a real `stt serve` process mid-stream: every client gets its Final.

Signals go out when the clients have heard what the test needs (their words, the drain's
Warning), never after a guessed delay."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from typing import Any

from stt.engine.fake.tones import encode_text
from stt.tools.client import StreamResult, stream_audio
from tests.helpers import MessageWatch, serve_process, unique_texts


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def run_drain(
    flags: list[str], texts: list[str], sigterm_after: tuple[str, int]
) -> tuple[list[StreamResult], Any, int]:
    """Stream `texts` in real time; SIGTERM once each client has received `sigterm_after`
    (a message type, how many); a late client connects once every stream was warned (the
    drain has begun)."""
    with serve_process("--engine", "fake", "--fake-delay-frames", "3", *flags) as (proc, port):
        url = f"ws://127.0.0.1:{port}/v1/stream"
        heard = [MessageWatch(*sigterm_after) for _ in texts]
        warned = [MessageWatch("Warning") for _ in texts]

        def watch(i: int) -> Any:
            return lambda received: (heard[i](received), warned[i](received))

        async def signal_when_heard() -> None:
            for watch_ in heard:
                await watch_.wait()
            proc.send_signal(signal.SIGTERM)

        async def late_comer() -> tuple[StreamResult, int]:
            for watch_ in warned:
                await watch_.wait()
            ready = await asyncio.to_thread(readyz, port)
            return await stream_audio(url, encode_text("too late")), ready

        async def main() -> tuple[list[StreamResult], Any]:
            clients = [
                stream_audio(url, encode_text(t, lead_frames=3), realtime=True, on_message=watch(i))
                for i, t in enumerate(texts)
            ]
            *results, _, late = await asyncio.gather(*clients, signal_when_heard(), late_comer())
            return results, late

        results, late = asyncio.run(main())
        exit_code = proc.wait(timeout=30)
    return results, late, exit_code


def test_streams_that_end_within_the_grace_period_complete_normally() -> None:
    *texts, anchor = unique_texts(4, seed=21)
    texts.append(" ".join([anchor] * 4))  # a longer stream keeps the drain going for the late client
    results, (late, ready_status), exit_code = run_drain(["--drain-grace-s", "20"], texts, ("Ready", 1))
    for text, result in zip(texts, results, strict=True):
        final = result.final
        assert final is not None and final["status"] == "complete"
        assert final["transcript"] == text
        assert result.close_code == 1000
        warnings = result.of_type("Warning")
        assert warnings and warnings[0]["code"] == "draining" and warnings[0]["remaining_s"] == 20
    assert ready_status == 503  # load balancers stop routing here at once
    assert late.error is not None and late.error["code"] == "draining" and late.close_code == 4504
    assert exit_code == 0


def test_streams_still_open_after_the_grace_period_are_flushed_with_a_final() -> None:
    texts = [" ".join(["longer", "stream", "than", "the", "grace", "period", "allows", "for", "sure"])]
    results, _, exit_code = run_drain(["--drain-grace-s", "0.5"], texts, ("Word", 2))
    (result,) = results
    final = result.final
    assert final is not None and final["status"] == "draining"
    assert result.close_code == 1001
    words = [w["text"] for w in result.words]
    assert [w["word"] for w in final["words"]] == words  # nothing sent is missing from the Final
    assert 2 <= len(words) < len(texts[0].split())  # cut by the drain, not completed
    expected = texts[0].split()
    assert words[:-1] == expected[: len(words) - 1]  # everything before the cut is exact
    assert expected[len(words) - 1].startswith(words[-1])  # the flush may cut the last word short
    assert exit_code == 0
    assert json.loads(json.dumps(final))  # well-formed


def test_a_second_signal_forces_exit() -> None:
    with serve_process("--engine", "fake", "--drain-grace-s", "60") as (proc, port):

        async def hold() -> float:
            heard, warned = MessageWatch("Word"), MessageWatch("Warning")
            stream = asyncio.create_task(
                stream_audio(
                    f"ws://127.0.0.1:{port}/v1/stream",
                    encode_text("hold " * 20),
                    realtime=True,
                    on_message=lambda received: (heard(received), warned(received)),
                )
            )
            await heard.wait()
            proc.send_signal(signal.SIGINT)  # starts a 60 s drain
            await warned.wait()
            loop = asyncio.get_running_loop()
            started = loop.time()
            proc.send_signal(signal.SIGINT)  # does not wait for it
            await asyncio.to_thread(proc.wait, 20)
            stream.cancel()
            return loop.time() - started

        assert asyncio.run(hold()) < 15


def test_kyutai_and_realtime_streams_are_drained_like_the_others() -> None:
    """The drain ends streams of every protocol the same way: all words out, then 1001."""
    import base64

    import msgpack
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from stt.audio import float32_to_pcm16

    text = " ".join(["drained"] * 12)
    audio = encode_text(text, lead_frames=3)
    frames = [audio[i : i + 1920] for i in range(0, audio.size, 1920)]
    flags = ("--engine", "fake", "--fake-delay-frames", "3", "--drain-grace-s", "0.3")
    with serve_process(*flags) as (proc, port):
        heard = [asyncio.Event(), asyncio.Event()]

        async def kyutai() -> tuple[list[str], int | None]:
            words: list[str] = []
            async with connect(f"ws://127.0.0.1:{port}/api/asr-streaming") as ws:

                async def send() -> None:
                    for frame in frames:
                        await ws.send(msgpack.packb({"type": "Audio", "pcm": frame.tolist()}))
                        await asyncio.sleep(0.08)  # a live microphone's pace

                sender = asyncio.create_task(send())
                try:
                    async for raw in ws:
                        message = msgpack.unpackb(raw)
                        assert message["type"] != "Error", message
                        if message["type"] == "Word":
                            words.append(message["text"])
                            heard[0].set()
                except ConnectionClosed:
                    pass
                sender.cancel()
                return words, ws.close_code

        async def realtime() -> tuple[list[dict[str, Any]], int | None]:
            events: list[dict[str, Any]] = []
            async with connect(f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription") as ws:

                async def send() -> None:
                    for frame in frames:
                        chunk = base64.b64encode(float32_to_pcm16(frame)).decode()
                        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                        await asyncio.sleep(0.08)

                sender = asyncio.create_task(send())
                try:
                    async for raw in ws:
                        events.append(json.loads(raw))
                        if events[-1]["type"].endswith("transcription.delta"):
                            heard[1].set()
                except ConnectionClosed:
                    pass
                sender.cancel()
                return events, ws.close_code

        async def signal_when_heard() -> None:
            for event in heard:
                await event.wait()
            proc.send_signal(signal.SIGTERM)

        async def main() -> tuple[Any, Any, None]:
            return await asyncio.gather(kyutai(), realtime(), signal_when_heard())

        (words, kyutai_code), (events, realtime_code), _ = asyncio.run(main())
        assert proc.wait(timeout=30) == 0
    assert kyutai_code == realtime_code == 1001
    assert 1 <= len(words) < 12  # cut by the drain, not completed
    assert set(words[:-1]) <= {"drained"} and "drained".startswith(words[-1])  # the flush may cut the last
    deltas = [e["delta"] for e in events if e["type"].endswith("transcription.delta")]
    completed = [e for e in events if e["type"].endswith("transcription.completed")]
    assert len(completed) == 1 and completed[0]["transcript"] == "".join(deltas)
    assert [e["type"] for e in events if e["type"] == "error"] == []
