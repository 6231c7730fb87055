"""Engines behind the sealed boundary in `stt.engine.interface`.

Only modules in this package import model libraries (torch, moshi, faster-whisper), and
only lazily, when an engine is built.
"""

from stt.engine.interface import (
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
