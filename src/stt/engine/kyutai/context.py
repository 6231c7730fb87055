"""When a slot's LM context is refreshed, so a stream of any length stays inside what the
model was trained on.

Kyutai's LMs attend over a fixed window (`context` in config.json: 750 frames, 60 s, for
stt-1b-en_fr; 375 for stt-2.6b-en); users of Kyutai's servers report that long sessions
stall, drift or repeat themselves, and ask for a KV-cache reset between turns. Here each slot
restarts its LM (KV cache and position; the codec keeps running) on its own, at a point where
nothing is being said: a pause the model itself predicts (its end-of-turn head) or a long run
of text padding, once half the window has passed; when no such point comes before the
window is full, the refresh is forced (the word in progress is sent first). The restarted
LM's first frame stands in for the lead-in of a new stream, and the word decoder keeps the
stream's clock, so the client sees nothing.

Pure Python: one `ContextClock` per slot, fed one step at a time, tested on sequences alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stt.constants import FRAME_SECONDS

QUIET_S = 1.0
"""Text padding in a row that counts as a pause, at least (and at least the model's delay)."""


class Refresh(enum.Enum):
    """Why a slot's context is refreshed at this step."""

    PAUSE = "pause"
    """The end-of-turn head predicted a pause, with no word in progress."""
    QUIET = "quiet"
    """A long run of padding tokens, with no word in progress."""
    FORCED = "forced"
    """The window is full and no pause came."""


@dataclass(frozen=True)
class ContextPolicy:
    """The refresh points of one engine, in LM steps (80 ms frames)."""

    horizon: int
    """Refresh at the latest when the LM has taken this many steps (its context, at most)."""
    earliest: int
    """No refresh before this many steps: half the horizon."""
    quiet_frames: int
    """Padding tokens in a row that make a refresh point."""
    pause_threshold: float
    """End-of-turn probability that makes a refresh point (0: the LM has no such head)."""

    @classmethod
    def for_model(
        cls,
        context_frames: int | None,
        delay_frames: int,
        *,
        limit_s: float = 0.0,
        pause_threshold: float = 0.0,
    ) -> ContextPolicy | None:
        """The policy for an LM with this attention window (None: unbounded, no refresh
        needed) and text delay; `limit_s` > 0 lowers the horizon below the window."""
        horizons = [h for h in (context_frames, round(limit_s / FRAME_SECONDS) if limit_s > 0 else None) if h]
        if not horizons:
            return None
        horizon = max(2, min(horizons))
        quiet = max(round(QUIET_S / FRAME_SECONDS), delay_frames + 1)
        return cls(horizon, horizon // 2, quiet, pause_threshold)


@dataclass
class ContextClock:
    """One slot's steps since its LM (re)started, and whether this step is a refresh point."""

    policy: ContextPolicy
    lm_steps: int = 0
    quiet: int = 0
    """Non-piece tokens in a row (padding or boundaries), the latest included."""

    def observe(self, *, piece: bool, pending: bool, pause_probability: float | None) -> Refresh | None:
        """Count this step; say whether the slot's LM should restart after it. `piece` is
        whether the step's token was a word piece, `pending` whether a word is in progress."""
        self.lm_steps += 1
        self.quiet = 0 if piece else self.quiet + 1
        policy = self.policy
        if self.lm_steps >= policy.horizon:
            return Refresh.FORCED
        if self.lm_steps < policy.earliest or pending:
            return None
        if (
            policy.pause_threshold > 0
            and pause_probability is not None
            and pause_probability >= policy.pause_threshold
        ):
            return Refresh.PAUSE
        if self.quiet >= policy.quiet_frames:
            return Refresh.QUIET
        return None

    def restart(self) -> None:
        self.lm_steps = 0
        self.quiet = 0
