"""A stream's slot is held for exactly as long as its handler runs, however it ends.

Driven as the ASGI server drives the app (the real route, lifespan and middleware), with a
transport whose accept() fails: a real socket cannot be made to fail at that instant on cue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from stt.engine.fake.engine import FakeEngine
from stt.scheduler import Scheduler
from stt.server.app import create_app
from tests.helpers import make_settings

Message = dict[str, Any]


def websocket_scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/v1/stream",
        "raw_path": b"/v1/stream",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }


class Transport:
    """One WebSocket as the ASGI server sees it: scripted client messages, recorded sends."""

    def __init__(self, client: list[Message], fail_on: str | None = None) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        for message in [{"type": "websocket.connect"}, *client]:
            self.incoming.put_nowait(message)
        self.sent: list[Message] = []
        self.answered = asyncio.Event()
        """Set once the app sent its first message after accepting (Ready or Error)."""
        self._fail_on = fail_on

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def send(self, message: Message) -> None:
        if message["type"] == self._fail_on:
            raise OSError("connection reset by peer")
        self.sent.append(message)
        if message["type"] == "websocket.send":
            self.answered.set()
        if message["type"] == "websocket.close":
            self.incoming.put_nowait({"type": "websocket.disconnect", "code": message.get("code", 1000)})


def serve(check: Callable[[Any, Scheduler], Any]) -> None:
    async def main() -> None:
        app = create_app(make_settings(), engine=FakeEngine(slots=1))
        async with app.router.lifespan_context(app):
            await check(app, app.state.scheduler)

    asyncio.run(main())


def test_a_failing_accept_releases_the_slot() -> None:
    async def check(app: Any, scheduler: Scheduler) -> None:
        failing = Transport([], fail_on="websocket.accept")
        with pytest.raises(OSError, match="connection reset"):
            await app(websocket_scope(), failing.receive, failing.send)
        assert scheduler.used_slots == 0
        assert len(app.state.lifecycle) == 0

        # The one slot serves the next client in full.
        client = Transport([{"type": "websocket.receive", "text": json.dumps({"type": "CloseStream"})}])
        await asyncio.wait_for(app(websocket_scope(), client.receive, client.send), 10)
        kinds = [m["type"] for m in client.sent]
        assert kinds == ["websocket.accept", "websocket.send", "websocket.send", "websocket.close"]
        assert [json.loads(m["text"])["type"] for m in client.sent[1:3]] == ["Ready", "Final"]
        assert client.sent[-1]["code"] == 1000
        assert scheduler.used_slots == 0

    serve(check)


def test_a_full_server_refuses_with_over_capacity_and_keeps_the_holder() -> None:
    async def check(app: Any, scheduler: Scheduler) -> None:
        holder = Transport([])
        held = asyncio.create_task(app(websocket_scope(), holder.receive, holder.send))
        await asyncio.wait_for(holder.answered.wait(), 10)
        assert json.loads(holder.sent[1]["text"])["type"] == "Ready"
        refused = Transport([])
        await asyncio.wait_for(app(websocket_scope(), refused.receive, refused.send), 10)
        error = json.loads(refused.sent[1]["text"])
        assert (error["type"], error["code"], refused.sent[-1]["code"]) == ("Error", "over_capacity", 4503)
        assert error["message"] == "all 1 slots are busy; retry later"
        assert scheduler.used_slots == 1
        holder.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(held, 10)
        assert scheduler.used_slots == 0

    serve(check)
