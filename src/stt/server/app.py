"""The HTTP/WebSocket front: the only module that imports FastAPI (and runs uvicorn).

`create_app` builds nothing at import time; the engine, scheduler, metrics and stream
registry are made in the lifespan and live on `app.state`. Tests pass a ready engine in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from stt.config import Settings
from stt.constants import PROTOCOL_VERSION
from stt.engine.interface import Capacity, CountingEngine, Engine, EngineInfo
from stt.engine.registry import build_engine, served_model
from stt.logs import fields
from stt.messages import ErrorCode
from stt.metrics import CONTENT_TYPE, Metrics
from stt.protocols import Adapter, kyutai, realtime
from stt.protocols.native import NativeProtocol
from stt.ratelimit import KeyedRateLimiter
from stt.scheduler import NoCapacityError, Scheduler
from stt.server import page, transcriptions
from stt.server.auth import Authenticator, extract_token
from stt.server.errors import error_response as _error
from stt.server.lifecycle import Lifecycle
from stt.session import Binary, Disconnect, Frame, Incoming, Session, Text

log = logging.getLogger(__name__)

STREAM_PATHS = ("/v1/stream", "/v1/transcribe")
AdapterFactory = Callable[[EngineInfo, str], Adapter]
"""Builds a connection's protocol adapter (and its session) from the engine and client address."""
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Reachable without an API key (orchestrators probe them); so are the browser page and its
files (`stt.server.page.is_public`), which hold no secret and ask for the key themselves."""


class _StarletteConnection:
    """Adapts Starlette's WebSocket to `stt.session.Connection`."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket

    async def accept(self) -> None:
        await self._ws.accept()

    async def receive(self) -> Incoming:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return Disconnect(1006)
        if message["type"] == "websocket.disconnect":
            return Disconnect(int(message.get("code") or 1005))
        data = message.get("bytes")
        if data is not None:
            return Binary(data)
        return Text(message.get("text") or "")

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def send_bytes(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def close(self, code: int, reason: str = "") -> None:
        await self._ws.close(code, reason)


async def _deny(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
    """Answer a request with `response` before any WebSocket upgrade. Servers without the
    denial-response extension can only refuse the upgrade (HTTP 403)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await response(scope, receive, send)


class _AuthMiddleware:
    """Every path but /healthz and /readyz needs a valid API key when keys are configured.
    Runs before routing, so a refused WebSocket never upgrades (HTTP 401)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, metrics: Metrics) -> None:
        self.app = app
        self.authenticator = authenticator
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.authenticator.enabled:
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS or (scope["type"] == "http" and page.is_public(scope["path"])):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        label = self.authenticator.identify(extract_token(headers, query))
        if label is None:
            self.metrics.rejections.labels("unauthorized").inc()
            message = (
                "missing or invalid API key: send `Authorization: Bearer KEY`, "
                "the `kyutai-api-key: KEY` header, ?token=KEY or ?auth_id=KEY"
            )
            response = _error(401, ErrorCode.UNAUTHORIZED.value, message, {"WWW-Authenticate": "Bearer"})
            await _deny(scope, receive, send, response)
            return
        scope.setdefault("state", {})["api_key"] = label
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The application. Without `engine`, the configured one is built at startup."""
    limits = settings.limits
    # Kyutai clients send audio of any length (the last chunk of a file, then silence): no
    # minimum chunk there; every other limit is the same.
    kyutai_limits = dataclasses.replace(limits, min_chunk_ms=0.0)
    # OpenAI's clients append audio of any length too.
    realtime_limits = kyutai_limits
    metrics = Metrics()
    authenticator = Authenticator.from_settings(settings.auth.api_keys, settings.auth.api_keys_file)
    connects = KeyedRateLimiter(settings.auth.connect_rate_per_s, settings.auth.connect_burst)
    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = engine if engine is not None else await asyncio.to_thread(build_engine, settings)
        scheduler = Scheduler(built, batch_wait_s=settings.engine.batch_wait_ms / 1000)
        scheduler.add_step_observer(lambda s, rows: metrics.observe_step(s, rows, scheduler.total_slots))
        metrics.bind_engine_counters(built.counters if isinstance(built, CountingEngine) else dict)
        await scheduler.start()
        app.state.scheduler = scheduler
        app.state.model = {
            "id": served_model(settings, built.info.name),
            "object": "model",
            "created": int(time.time()),  # when this server started serving it
            "owned_by": "stt-server",
            "engine": built.info.name,
        }
        metrics.bind_state(
            slots_used=lambda: scheduler.used_slots,
            slots_total=lambda: scheduler.total_slots,
            streams_open=lambda: len(lifecycle),
            backlog_s=lifecycle.backlog_s,
            accepting=lambda: float(lifecycle.accepting),
        )
        if authenticator.enabled:
            log.info("authentication on", extra=fields(keys=len(authenticator)))
        else:
            loopback = settings.server.host in ("127.0.0.1", "localhost", "::1")
            level = logging.INFO if loopback else logging.WARNING
            log.log(level, "authentication off: no API keys configured (STT_API_KEYS or STT_API_KEYS_FILE)")
        capacity = scheduler.capacity
        log.info(
            "serving",
            extra=fields(
                engine=built.info.name,
                slots=built.info.max_batch,
                capacity=capacity.streams,
                capacity_source=capacity.source,
                delay_s=built.info.delay_s,
            ),
        )
        try:
            yield
        finally:
            lifecycle.accepting = False
            await scheduler.stop()

    app = FastAPI(title="stt-server", version=str(PROTOCOL_VERSION), lifespan=lifespan)
    app.add_middleware(_AuthMiddleware, authenticator=authenticator, metrics=metrics)
    app.state.metrics = metrics
    app.state.lifecycle = lifecycle

    def scheduler_of(app: FastAPI) -> Scheduler:
        scheduler: Scheduler = app.state.scheduler
        return scheduler

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the engine is warmed up and new streams are accepted."""
        scheduler: Scheduler | None = getattr(app.state, "scheduler", None)
        ready = bool(lifecycle.accepting and scheduler is not None and scheduler.running)
        body: dict[str, Any] = {"ready": ready}
        if scheduler is not None:
            body.update(slots_used=scheduler.used_slots, slots_total=scheduler.total_slots)
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        """Capacity for load balancers: route new streams where slots are free (`slots_free`:
        streams that would be admitted now, within the engine's capacity)."""
        scheduler = scheduler_of(app)
        capacity = scheduler.capacity
        return {
            "engine": scheduler.info.name,
            "protocol_version": PROTOCOL_VERSION,
            "accepting": lifecycle.accepting,
            "draining": lifecycle.draining,
            "slots_used": scheduler.used_slots,
            "slots_total": scheduler.total_slots,
            "slots_free": max(0, capacity.streams - scheduler.used_slots),
            "streams_open": len(lifecycle),
            "capacity": capacity.as_dict(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """What this server serves, in OpenAI's list format (SDKs and tools query it first)."""
        return {"object": "list", "data": [app.state.model]}

    @app.get("/v1/models/{model_id:path}", response_model=None)
    async def model(model_id: str) -> JSONResponse | dict[str, Any]:
        served: dict[str, Any] = app.state.model
        if model_id != served["id"]:
            message = f"no model {model_id!r} here; this server serves {served['id']!r}"
            return _error(404, "model_not_found", message)
        return served

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def refuse(websocket: WebSocket, code: ErrorCode, frame: Frame) -> None:
        metrics.rejections.labels(code.value).inc()
        await websocket.accept()
        if isinstance(frame, str):
            await websocket.send_text(frame)
        else:
            await websocket.send_bytes(frame)
        await websocket.close(code.close_code, code.value)

    def native(info: EngineInfo, client: str) -> Adapter:
        def capacity() -> Capacity:
            return scheduler_of(app).capacity

        return NativeProtocol(Session(info, limits, metrics, client=client, capacity=capacity))

    def kyutai_adapter(info: EngineInfo, client: str) -> Adapter:
        return kyutai.KyutaiProtocol(info, kyutai_limits, metrics, client=client)

    def realtime_adapter(info: EngineInfo, client: str) -> Adapter:
        return realtime.RealtimeProtocol(info, realtime_limits, metrics, client=client)

    async def realtime_stream(websocket: WebSocket) -> None:
        intent = websocket.query_params.get("intent")
        if intent != realtime.INTENT:
            await refuse(websocket, ErrorCode.BAD_MESSAGE, realtime.wrong_intent(intent))
            return
        await serve(websocket, realtime_adapter)

    def endpoint(build: AdapterFactory) -> Callable[[WebSocket], Awaitable[None]]:
        async def serve_protocol(websocket: WebSocket) -> None:
            await serve(websocket, build)

        return serve_protocol

    async def serve(websocket: WebSocket, build: AdapterFactory) -> None:
        """One stream of any protocol: the same admission, slot, drain and session."""
        scheduler = scheduler_of(websocket.app)
        client = websocket.client.host if websocket.client else "-"
        adapter = build(scheduler.info, client)
        key = getattr(websocket.state, "api_key", None) or f"addr:{client}"
        if not connects.allow(key):
            metrics.rejections.labels(ErrorCode.RATE_LIMITED.value).inc()
            message = f"more than {settings.auth.connect_rate_per_s:g} new streams per second; slow down"
            response = _error(429, ErrorCode.RATE_LIMITED.value, message, {"Retry-After": "1"})
            await _deny(websocket.scope, websocket.receive, websocket.send, response)
            return
        if not lifecycle.accepting:
            message = "the server is shutting down; connect to another replica"
            await refuse(websocket, ErrorCode.DRAINING, adapter.refusal(ErrorCode.DRAINING, message))
            return
        session = adapter.session
        try:
            async with scheduler.stream(session) as handle:
                # The slot is taken before the upgrade (a refusal is sent instead of Ready) and
                # released when this block exits, however it does: accept() can fail too.
                lifecycle.add(session)
                try:
                    await session.run(_StarletteConnection(websocket), handle)
                finally:
                    lifecycle.discard(session)
        except NoCapacityError as exc:
            frame = adapter.refusal(ErrorCode.OVER_CAPACITY, str(exc))
            await refuse(websocket, ErrorCode.OVER_CAPACITY, frame)

    for path in STREAM_PATHS:
        app.add_api_websocket_route(path, endpoint(native))
    app.add_api_websocket_route(kyutai.PATH, endpoint(kyutai_adapter))
    app.add_api_websocket_route(realtime.PATH, realtime_stream)

    app.state.transcriptions = transcriptions.TranscriptionRoute(settings, lifecycle, metrics, scheduler_of)
    app.add_api_route(
        transcriptions.PATH,
        app.state.transcriptions,
        methods=["POST"],
        response_model=None,
        summary="Transcribe an audio file (OpenAI-compatible; see docs/protocol.md)",
    )
    page.add_page(app)

    return app


class DrainingServer(uvicorn.Server):
    """uvicorn, but the first SIGTERM/SIGINT drains streams before uvicorn's own shutdown
    (which would otherwise close every open WebSocket at once with 1012). A second signal
    falls back to uvicorn's behaviour (Ctrl+C twice forces exit)."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, grace_s: float) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self.startup_done = threading.Event()
        """Set once startup has finished, listening or failed (`started` says which): another
        thread (a test running the server in the background) waits on it instead of polling."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop it serves on, once serving: other threads hand it coroutines with
        `asyncio.run_coroutine_threadsafe` (tests await the server's own events this way)."""
        return self._loop

    async def serve(self, sockets: list[Any] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[Any] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._drain is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._lifecycle.drain(self._grace_s)
        finally:
            self.should_exit = True


GC_THRESHOLDS = (20_000, 50, 100)
"""Python's defaults (700, 10, 10) make the collector walk every open stream's objects every
few seconds: at 1000 streams a full collection took 60-210 ms and a middle one up to 65 ms,
during which no stream got a word (benchmarks/server_load.py: p99 added latency 260-520 ms).
With the startup objects frozen and these thresholds, a 20 s run at 1000 streams saw only
15 young collections (one over 20 000 objects takes about 0.4 ms on an idle CPU). Older
generations are still collected (a full collection is considered once per 100 million net
allocations), so cyclic garbage is reclaimed, only later: a 10-minute benchmarks/soak.py run
levelled off at 84 MiB where the defaults stay at 76 (gen1/gen2 thresholds of 10 kept memory
flat but brought back a 116 ms middle collection)."""


def quiet_gc() -> None:
    """Move everything built so far (imports, app, engine) out of the collector's reach and
    collect less often: the server's per-message objects are short-lived and acyclic."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_server(settings: Settings, engine: Engine) -> DrainingServer:
    """The uvicorn server `stt serve` runs, serving `engine` on settings.host:settings.port
    (port 0: any free port). Tests run this very server, so they exercise its config."""
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,  # stt.logs configured the root logger
        # Above our own limit so that oversize messages reach the session and get an Error.
        ws_max_size=max(16 << 20, 4 * settings.limits.max_message_bytes),
        timeout_graceful_shutdown=10,
        # PCM audio barely compresses and words are tiny; permessage-deflate (offered by browsers
        # and the websockets client) cost 17% more CPU and 45 KiB more memory per stream at 500
        # streams (benchmarks/server_load.py --deflate).
        ws_per_message_deflate=False,
        # libuv's loop (a pinned dependency; uvicorn's "auto" would silently fall back to
        # asyncio's when it is missing): about 15% less event-loop CPU at 500 streams
        # (benchmarks/server_load.py).
        loop="uvloop",
    )
    return DrainingServer(config, app.state.lifecycle, settings.server.drain_grace_s)


def run_server(settings: Settings, engine: Engine) -> None:
    """Serve `engine` with uvicorn until SIGTERM/SIGINT, then drain gracefully."""
    server = build_server(settings, engine)
    quiet_gc()
    server.run()
