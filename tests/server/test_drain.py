"""SIGTERM to a real `stt serve` process mid-stream: every client gets its Final."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from typing import Any

from stt.engine.fake.tones import encode_text
from stt.tools.client import StreamResult, stream_audio
from tests.conftest import serve_process
from tests.test_concurrency import unique_texts


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def run_drain(
    flags: list[str], texts: list[str], sigterm_after_s: float
) -> tuple[list[StreamResult], Any, int]:
    with serve_process("--engine", "fake", "--fake-delay-frames", "3", *flags) as (proc, port):
        url = f"ws://127.0.0.1:{port}/v1/stream"

        async def late_comer() -> tuple[StreamResult, int]:
            await asyncio.sleep(sigterm_after_s + 0.3)
            ready = await asyncio.to_thread(readyz, port)
            return await stream_audio(url, encode_text("too late")), ready

        async def main() -> tuple[list[StreamResult], Any]:
            loop = asyncio.get_running_loop()
            loop.call_later(sigterm_after_s, proc.send_signal, signal.SIGTERM)
            clients = [stream_audio(url, encode_text(t, lead_frames=3), realtime=True) for t in texts]
            *results, late = await asyncio.gather(*clients, late_comer())
            return results, late

        results, late = asyncio.run(main())
        exit_code = proc.wait(timeout=30)
    return results, late, exit_code


def test_streams_that_end_within_the_grace_period_complete_normally() -> None:
    texts = unique_texts(3, seed=21)
    results, (late, ready_status), exit_code = run_drain(
        ["--drain-grace-s", "20"], texts, sigterm_after_s=0.8
    )
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
    results, _, exit_code = run_drain(["--drain-grace-s", "0.5"], texts, sigterm_after_s=1.0)
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
            stream = asyncio.create_task(
                stream_audio(f"ws://127.0.0.1:{port}/v1/stream", encode_text("hold " * 20), realtime=True)
            )
            await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGINT)  # starts a 60 s drain
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            proc.send_signal(signal.SIGINT)  # does not wait for it
            await asyncio.to_thread(proc.wait, 20)
            stream.cancel()
            return loop.time() - started

        assert asyncio.run(hold()) < 15
