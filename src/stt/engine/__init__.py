"""Engines behind the sealed boundary in `stt.engine.protocol`.

Only modules in this package import model libraries (torch, moshi, faster-whisper), and
only lazily, when an engine is built.
"""

from stt.engine.protocol import (
    Engine,
    EngineEvent,
    EngineInfo,
    PauseEvent,
    StepInput,
    StepOutput,
    StreamOptions,
    WordEvent,
)

__all__ = [
    "Engine",
    "EngineEvent",
    "EngineInfo",
    "PauseEvent",
    "StepInput",
    "StepOutput",
    "StreamOptions",
    "WordEvent",
]
