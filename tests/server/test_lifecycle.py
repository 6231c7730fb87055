import asyncio

from stt.messages import CloseCode, FinalStatus
from stt.server.lifecycle import Lifecycle


class Stream:
    def __init__(self, lifecycle: Lifecycle, name: str, finishes_after_s: float | None) -> None:
        self.id = name
        self.backlog_s = 0.5
        self.warnings: list[tuple[str, float]] = []
        self.ended: tuple[FinalStatus, CloseCode] | None = None
        self._lifecycle = lifecycle
        if finishes_after_s is not None:
            asyncio.get_running_loop().call_later(finishes_after_s, lifecycle.discard, self)

    def warn(self, code: str, message: str, remaining_s: float) -> None:
        self.warnings.append((code, remaining_s))

    def end_by_server(self, status: FinalStatus) -> None:
        self.ended = (status, status.close_code)
        asyncio.get_running_loop().call_later(0.01, self._lifecycle.discard, self)


def test_drain_lets_streams_finish_then_ends_the_rest() -> None:
    async def main() -> None:
        lifecycle = Lifecycle()
        quick = Stream(lifecycle, "quick", finishes_after_s=0.05)
        slow = Stream(lifecycle, "slow", finishes_after_s=None)
        lifecycle.add(quick)
        lifecycle.add(slow)
        assert lifecycle.backlog_s() == 1.0
        await lifecycle.drain(grace_s=0.3)
        assert not lifecycle.accepting and lifecycle.draining and len(lifecycle) == 0
        assert quick.warnings == [("draining", 0.3)] and quick.ended is None
        assert slow.ended == (FinalStatus.DRAINING, CloseCode.GOING_AWAY)

    asyncio.run(main())


def test_drain_with_nothing_open_returns_at_once() -> None:
    async def main() -> float:
        lifecycle = Lifecycle()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await lifecycle.drain(grace_s=30)
        return loop.time() - started

    assert asyncio.run(main()) < 1
