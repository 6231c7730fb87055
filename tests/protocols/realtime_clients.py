"""Drive /v1/realtime?intent=transcription with the official `openai` SDK."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from openai import AsyncOpenAI

from stt.audio import float32_to_pcm16

CHUNK_SAMPLES = 2400
"""100 ms per append, as a microphone client sends."""


@dataclass
class Item:
    deltas: list[str] = field(default_factory=list)
    completed: str | None = None


@dataclass
class RealtimeRun:
    events: list[Any] = field(default_factory=list)
    items: dict[str, Item] = field(default_factory=dict)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def completed(self) -> list[str]:
        return [i.completed for i in self.items.values() if i.completed is not None]


def client(base_url: str, api_key: str = "public_token") -> AsyncOpenAI:
    """An SDK client for this server: HTTP at /v1, WebSockets at ws://…/v1 (+ /realtime)."""
    return AsyncOpenAI(
        base_url=f"{base_url}/v1",
        websocket_base_url=base_url.replace("http", "ws", 1) + "/v1",
        api_key=api_key,
    )


def session_config(turn_detection: dict[str, Any] | None, language: str | None = "en") -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": language},
                "turn_detection": turn_detection,
            }
        },
    }


async def transcribe(
    base_url: str,
    audio: npt.NDArray[np.float32],
    *,
    turn_detection: dict[str, Any] | None,
    items: int,
    language: str | None = "en",
    commit: bool = True,
) -> RealtimeRun:
    """Stream `audio` (as fast as the server reads it), commit it when `commit`, then keep
    sending silence at the pace of a microphone until `items` are completed."""
    run = RealtimeRun()
    pcm = float32_to_pcm16(audio)
    step = 2 * CHUNK_SAMPLES
    async with client(base_url).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session=session_config(turn_detection, language))  # type: ignore[arg-type]
        for offset in range(0, len(pcm), step):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[offset : offset + step]).decode())
        if commit:
            await conn.input_audio_buffer.commit()

        async def microphone() -> None:
            quiet = base64.b64encode(bytes(step)).decode()
            while True:
                await conn.input_audio_buffer.append(audio=quiet)
                await asyncio.sleep(CHUNK_SAMPLES / 24_000)  # real time, as a live microphone

        mic = asyncio.create_task(microphone())
        try:
            async for event in conn:
                run.events.append(event)
                if event.type == "conversation.item.input_audio_transcription.delta":
                    run.items.setdefault(event.item_id, Item()).deltas.append(event.delta or "")
                elif event.type == "conversation.item.input_audio_transcription.completed":
                    run.items.setdefault(event.item_id, Item()).completed = event.transcript
                    if len(run.completed()) == items:
                        break
                elif event.type == "error":
                    raise AssertionError(f"error event: {event.error}")
        finally:
            mic.cancel()
    return run
