"""Token buckets: per-key admission of new streams and per-stream message rates."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` spends one if available."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def take(self) -> bool:
        if self.rate <= 0:
            return True  # limiting is off
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def due_in_s(self) -> float:
        """Seconds until `take()` would succeed (0 when it would now)."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


class KeyedRateLimiter:
    """One bucket per key, at most `max_keys` remembered (least recently used are dropped),
    so a stream of distinct client addresses cannot grow memory without bound."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst, self._clock)
        self._buckets[key] = bucket
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return bucket.take()
