from stt.ratelimit import KeyedRateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.5
    assert bucket.take() and not bucket.take()
    clock.now = 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst


def test_zero_rate_means_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=1)
    assert all(bucket.take() for _ in range(1000))
    assert all(KeyedRateLimiter(0, 1).allow("k") for _ in range(1000))


def test_keys_are_limited_separately() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(1, 2, clock=clock)
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")


def test_memory_is_bounded_by_max_keys() -> None:
    clock = Clock()
    limiter = KeyedRateLimiter(1, 1, max_keys=3, clock=clock)
    for i in range(100):
        assert limiter.allow(f"addr{i}")
    assert len(limiter._buckets) == 3
