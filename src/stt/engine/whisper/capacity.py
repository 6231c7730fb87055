"""What the decoder sustains: its measured cost and the streams that fit a latency budget.

Every stream that speaks wants its growing utterance decoded again and again; the decode
workers serve them all, so with N speaking streams each waits about N decodes between two of
its own. The engine keeps a moving average of what one stream's decode costs (probed at
warm-up, then every real decode: a batch of B windows counts as B decodes of 1/B its time),
and admits the streams whose decodes all fit in `budget_s`: floor(budget / cost). The cost is
wall time on a decode thread, divided among the decodes running at once (`DecodeQueue`'s
shares: two side by side for 0.7 s cost 0.35 s each), so it is the decoder's throughput, and
a machine that other work slows down yields a lower capacity: new streams are refused
before the running ones lose their latency.

Pure arithmetic and a lock-free average (one float written by the decode threads, read by
the event loop), so it is tested with fake costs, without the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SMOOTHING = 0.2
"""Weight of the newest decode in the moving average: about the last ten decodes count."""


@dataclass
class CostMeter:
    """Moving average of decoder seconds per decoded window."""

    smoothing: float = SMOOTHING
    cost_s: float | None = None
    samples: int = 0

    def observe(self, seconds: float, windows: int = 1) -> None:
        """A decode call took `seconds` for `windows` streams' windows."""
        if windows < 1 or seconds < 0:
            raise ValueError(f"a decode of {windows} windows cannot take {seconds} s")
        per_window = seconds / windows
        previous = self.cost_s
        self.cost_s = per_window if previous is None else previous + self.smoothing * (per_window - previous)
        self.samples += 1


def streams_within(budget_s: float, cost_s: float, limit: int) -> int:
    """Streams whose decodes all fit in `budget_s` at `cost_s` each: 1 .. `limit`.

    One stream is always admitted (a server that refuses everything serves nobody; a lone
    stream's latency is the best the machine gives).
    """
    if budget_s <= 0 or limit < 1:
        raise ValueError("budget_s must be > 0 and limit >= 1")
    fits = math.floor(budget_s / cost_s + 1e-9) if cost_s > 0 else limit
    return max(1, min(limit, fits))
