"""Operations endpoints: ``GET /metrics`` (Prometheus text) and ``GET /readyz`` (readiness).

``/healthz`` (in rooms.py) stays a pure liveness check: the process answers. ``/readyz`` also
asks Redis, because without it the server can neither join a room nor sell: a load balancer
should stop sending new clients while it fails.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware

from ..clock import now_ms
from ..loops import PeriodicLoop
from ..media import MediaService
from ..metrics import CONTENT_TYPE, Metrics
from ..metrics_peers import MetricsPeers
from ..sockets import SocketEdge
from ._base import HandlerFn, json_response

__all__ = ["OpsRoutes", "RedisProbe", "metrics_middleware", "register_edge_gauges"]

log = logging.getLogger("liveroom.ops")
READY_TIMEOUT_S = 0.5
PROBE_INTERVAL_S = 5.0


class RedisProbe(PeriodicLoop):
    """Owner of the periodic Redis PING that feeds ``liveroom_redis_rtt_seconds`` and
    ``liveroom_redis_up``; ``check()`` is also what ``/readyz`` calls."""

    name = "redis-probe"

    def __init__(self, redis: aioredis.Redis, metrics: Metrics, *,
                 interval_s: float = PROBE_INTERVAL_S, timeout_s: float = READY_TIMEOUT_S) -> None:
        super().__init__(interval_s)
        self.redis = redis
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.last_error: str | None = None

    async def check(self) -> float | None:
        """The PING round trip in seconds, or None when Redis did not answer in time."""
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of
            # close(), leaving the loop running and close() waiting forever.
            async with asyncio.timeout(self.timeout_s):
                await self.redis.ping()
        except Exception as exc:  # refused, reset, timed out: all mean "not ready"
            self.last_error = (f"no answer within {self.timeout_s * 1000:.0f} ms"
                               if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
            self.metrics.redis_up.set(0)
            return None
        rtt = time.perf_counter() - started
        self.last_error = None
        self.metrics.redis_up.set(1)
        self.metrics.redis_rtt.observe(rtt)
        return rtt

    async def tick(self) -> None:
        if await self.check() is None:
            log.warning("redis did not answer PING: %s", self.last_error)

    async def _run(self) -> None:
        # Measure at once: the first scrape after start must not lack liveroom_redis_up.
        await self.tick()
        await super()._run()


def register_edge_gauges(metrics: Metrics, edge: SocketEdge, media: MediaService) -> None:
    """Gauges read at scrape time from the socket registry and the media relay."""

    def local_rooms() -> set[str]:
        return {room for conn in edge.connections.values() for room in conn.rooms}

    metrics.gauge_from("liveroom_connected_sockets", "Socket.IO connections on this process.",
                       lambda: len(edge.connections))
    metrics.gauge_from("liveroom_rooms", "Rooms with at least one member on this process.",
                       lambda: len(local_rooms()))
    metrics.gauge_from("liveroom_room_memberships",
                       "Room memberships (socket x room) on this process.",
                       lambda: sum(len(conn.rooms) for conn in edge.connections.values()))
    metrics.gauge_from("liveroom_relay_viewers", "Viewers watching a relayed broadcast.",
                       lambda: sum(len(media.viewer_ids(room)) for room in local_rooms()))
    metrics.gauge_from("liveroom_relay_peer_connections",
                       "WebRTC peer connections (broadcasters and viewers).",
                       lambda: media.peer_connection_count)


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Counts every HTTP response by method and status (after the error middleware's mapping)."""

    @web.middleware
    async def count_responses(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.http_responses.inc(request.method, str(exc.status))
            raise
        except Exception:
            metrics.http_responses.inc(request.method, "500")
            raise
        metrics.http_responses.inc(request.method, str(response.status))
        return response

    return count_responses


class OpsRoutes:
    def __init__(self, metrics: Metrics, probe: RedisProbe,
                 peers: MetricsPeers | None = None) -> None:
        self.metrics = metrics
        self.probe = probe
        self.peers = peers

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/metrics", self.scrape)
        router.add_get("/readyz", self.readyz)

    async def scrape(self, request: web.Request) -> web.Response:
        # The whole node's under --workers N (the siblings' snapshots merged in).
        text = await self.peers.render() if self.peers is not None else self.metrics.render()
        # aiohttp refuses a charset inside content_type; set the header whole.
        return web.Response(body=text.encode(),
                            headers={"Content-Type": CONTENT_TYPE})

    async def readyz(self, request: web.Request) -> web.Response:
        rtt = await self.probe.check()
        if rtt is None:
            return json_response({"error": {
                "code": "redis_unavailable",
                "message": f"redis is unreachable: {self.probe.last_error}"}}, 503)
        return json_response({"ok": True, "time": now_ms(),
                              "redis_rtt_ms": round(rtt * 1000, 3)})
