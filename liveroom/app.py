"""The composition root: builds every service from the settings and wires the edges to them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
import socketio
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inventory import HoldSweeper, InventoryService, Sale
from orders import HandoffConsumer, Order, OrderService, SandboxPaymentProvider, SqliteOrderStore
from trustbadges import CertificateService, ExpiryWatcher

from .accounts import AccountService, SandboxSms
from .addresses import ClientAddresses, parse_networks
from .bus import ControlBus
from .catalog import Catalog
from .certification import BadgeFanout, CertificateDesk, ExpiryPlans
from .clock import now_ms
from .commerce import (
    CertificationAdapter,
    FiguresPusher,
    InventoryLedger,
    OrderUpkeep,
    push_order,
)
from .handoff_process import new_consumer
from .http import Api
from .http._base import error_middleware
from .http.accounts import AccountRoutes
from .http.certificates import CertificateRoutes, LinkOrigin, default_allowed_hosts
from .http.commerce import CommerceRoutes
from .http.media import MediaRoutes
from .http.ops import OpsRoutes, RedisProbe, metrics_middleware, register_edge_gauges
from .http.pages import PageRoutes
from .http.rooms import RoomRoutes
from .http.transport import BodyDeadline, ConnectionCap, add_security_headers
from .identity import TokenSigner
from .media import RELAY_USER_ID, IceConfig, MediaService
from .media_router import MediaRouter
from .metrics import Counter, Metrics
from .rooms import RoomService
from .sales import SaleDesk, StockBroadcaster
from .settings import Settings
from .sockets import SocketEdge
from .sockets._base import create_sio
from .sockets._engineio_internals import HandshakeDeadline
from .sockets.commerce import CommerceEvents
from .sockets.media import MediaEvents, MediaHealthPusher
from .sockets.rooms import RoomEvents, ViewerCountPusher
from .sockets.slow_clients import SlowClientReaper

__all__ = ["Services", "create_app"]

log = logging.getLogger("liveroom.app")
SERVICES_KEY: web.AppKey[Services] = web.AppKey("services")
REDIS_POOL_SIZE = 32
INVENTORY_POOL_SIZE = 16
CloseStep = tuple[str, Callable[[], Awaitable[object]]]
CLOSE_STEP_S = 10.0
POOL_WAIT_S = 30


@dataclass
class Services:
    settings: Settings
    # The client address of a request or connection, behind the trusted proxies if any.
    addresses: ClientAddresses
    redis: aioredis.Redis
    signer: TokenSigner
    accounts: AccountService
    bus: ControlBus
    catalog: Catalog
    rooms: RoomService
    sio: socketio.AsyncServer
    edge: SocketEdge
    viewer_pusher: ViewerCountPusher
    certificates: CertificateService
    certificate_desk: CertificateDesk
    expiry_watcher: ExpiryWatcher
    media: MediaService
    # The ICE servers for pages (GET /api/rtc/config) and the relay, with TURN credentials.
    ice: IceConfig
    media_router: MediaRouter
    media_pusher: MediaHealthPusher
    inventory_redis: aioredis.Redis
    inventory: InventoryService
    sweeper: HoldSweeper
    stock_pusher: StockBroadcaster
    sales: SaleDesk
    order_store: SqliteOrderStore
    payments: SandboxPaymentProvider
    orders: OrderService
    # None when the consumer runs in a process of its own (liveroom serve).
    handoff: HandoffConsumer | None
    # None in a worker that does not own the hand-off consumer (--workers N, N > 0).
    order_upkeep: OrderUpkeep | None
    figures_pusher: FiguresPusher
    commerce_routes: CommerceRoutes
    reaper: SlowClientReaper
    # Closes Engine.IO sessions that never complete the Socket.IO connect.
    handshakes: HandshakeDeadline
    metrics: Metrics
    redis_probe: RedisProbe

    async def start(self) -> None:
        self.redis_probe.start()
        await self.bus.start()
        await self.inventory.start()
        await self.order_store.open()
        if self.handoff is not None:
            self.handoff.start()
        if self.order_upkeep is not None:
            # Checkouts and restocks a crash interrupted are settled before buyers come back.
            try:
                await self.order_upkeep.run_once()
            except Exception:
                log.exception("order upkeep at startup failed; the loop retries")
            self.order_upkeep.start()
        self.sweeper.start()
        self.stock_pusher.start()
        self.figures_pusher.start()
        self.viewer_pusher.start()
        self.expiry_watcher.start()
        self.media_pusher.start()
        self.reaper.start()
        self.handshakes.start()

    async def close(self) -> None:
        """Stop in reverse order: accepted buys are decided and pushed before Redis goes.

        Each step is bounded, so one owner that cannot stop (a peer connection, a Redis call
        that lost its cancellation) is logged by name and cannot hold up the rest.
        """
        steps: list[CloseStep] = [
            ("socket.io handshake deadline", self.handshakes.close),
            ("slow-client reaper", self.reaper.close),
            ("media relay", self.media.close),
            ("media health pusher", self.media_pusher.close),
            ("certificate expiry watcher", self.expiry_watcher.close),
            ("viewer count pusher", self.viewer_pusher.close),
        ]
        if self.order_upkeep is not None:
            steps.append(("order upkeep", self.order_upkeep.close))
        steps += [
            ("inventory", self.inventory.close),
            ("hold sweeper", self.sweeper.close),
            ("stock pusher", self.stock_pusher.close),
            ("figures pusher", self.figures_pusher.close),
        ]
        if self.handoff is not None:
            steps.append(("hand-off consumer", self.handoff.close))
        steps += [
            ("payments", self.payments.close),
            ("order store", self.order_store.close),
            ("control bus", self.bus.close),
            ("certificates", self.certificates.close),
            ("redis probe", self.redis_probe.close),
            ("inventory scripts", self.inventory.disconnect),
            ("inventory redis", self.inventory_redis.aclose),
            ("redis", self.redis.aclose),
        ]
        await close_in_order(steps)


async def close_in_order(steps: list[CloseStep], step_s: float = CLOSE_STEP_S) -> None:
    """Run every close step in order. A step that hangs past ``step_s`` or fails is logged by
    name and the rest still run: a shutdown that stops half-way leaves Redis connections, the
    order store and the hand-off child behind."""
    for name, close in steps:
        try:
            async with asyncio.timeout(step_s):
                await close()
        except TimeoutError:
            log.error("%s did not stop within %.0f s; going on", name, step_s)
        except Exception:
            log.exception("%s failed to stop; going on", name)


def redis_client(redis_url: str, pool_size: int) -> aioredis.Redis:
    """A bounded pool that reconnects after Redis restarts: a command that met a dropped
    connection is retried on a fresh one (our writes are idempotent or guarded)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        # A request that waits for a free connection under a spike is slow, not failed: the
        # wait is bounded generously, and the pool bounds the connections.
        redis_url, max_connections=pool_size, timeout=POOL_WAIT_S,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis(connection_pool=pool)


def build_services(settings: Settings, redis_url: str, *,
                   handoff_in_process: bool = True,
                   clock: Callable[[], int] = now_ms) -> Services:
    """``clock`` is the one clock of every service (wall-clock ms); tests may move it by
    hand."""
    redis = redis_client(redis_url, REDIS_POOL_SIZE)
    signer = TokenSigner(settings.resolve_secret(), settings.token_ttl_s, clock)
    addresses = ClientAddresses(parse_networks(settings.trusted_proxies),
                                parse_networks(settings.unlimited_addresses))
    accounts = AccountService(
        redis, settings.resolve_secret(), SandboxSms(), clock, echo_codes=settings.otp_echo,
        addresses=addresses, codes_per_address_per_hour=settings.otp_codes_per_address_per_hour,
        guest_sessions_per_address_per_min=settings.guest_sessions_per_address_per_min)
    bus = ControlBus(redis)
    catalog = Catalog(redis, clock)
    sio = create_sio(settings, redis_url)
    metrics = Metrics()
    edge = SocketEdge(sio, signer, settings, metrics, addresses)

    certificates = CertificateService.open(settings.data_dir, now_ms=clock)
    desk = CertificateDesk(certificates, catalog)
    catalog.set_badge_lookup(certificates.badges_for_many)
    fanout = BadgeFanout(catalog, desk, edge.emit_to)
    certificates.add_listener(fanout.on_change)
    expiry_watcher = ExpiryWatcher(certificates)
    certificates.add_listener(ExpiryPlans(bus, expiry_watcher).on_change)

    media_pusher = MediaHealthPusher(edge)
    ice = IceConfig(settings, clock)
    media = MediaService(
        # Asked per peer connection: short-lived TURN credentials are minted fresh each time.
        partial(ice.servers_for, RELAY_USER_ID),
        now_ms=clock, on_change=media_pusher.changed,
        connect_timeout_s=settings.rtc_connect_timeout_s,
    )
    router = MediaRouter(media, redis, bus, f"{socket.gethostname()}:{os.getpid()}",
                         several_workers=settings.workers > 1)
    media_pusher.router = router
    register_edge_gauges(metrics, edge, media)
    MediaEvents(edge, router, catalog, media_pusher)

    # The buy hot path gets its own small pool: the batcher keeps a few scripts in flight.
    inventory_redis = redis_client(redis_url, INVENTORY_POOL_SIZE)
    # ``sold_out_news`` (below) needs the inventory this pusher is handed to.
    stock_pusher = StockBroadcaster(edge.emit_to, emit_together=edge.emit_together,
                                    sold_out_news=lambda sale_id: sold_out_news(sale_id))
    stock = InventoryService(inventory_redis, now_ms=clock, on_stock_change=stock_pusher.record,
                             max_batch_window_s=settings.buy_batch_max_ms / 1000,
                             target_batch=settings.buy_batch_target)
    sales = SaleDesk(redis, catalog, stock, clock, edge.emit_to)
    rooms = RoomService(redis, catalog, clock, chat_max_chars=settings.chat_max_chars,
                        buyer_bans=sales, addresses=addresses,
                        chat_per_speaker=settings.chat_per_speaker_per_10s,
                        chat_per_address=settings.chat_per_address_per_10s)
    rooms.add_state_extra(media_pusher.room_state)
    rooms.add_state_extra(sales.room_state)
    pusher = ViewerCountPusher(edge, rooms)
    RoomEvents(edge, rooms, bus, pusher)

    async def sale_changed(sale: Sale) -> None:
        await sales.announce(sale)

    async def sold_out_news(sale_id: str) -> dict[str, Any] | None:
        # The same claim as the sweeper's: whichever reports the sell-out first pushes it.
        sale = await stock.get_sale(sale_id)
        view = await sales.push_view(sale)
        return view if await sales.claim_push(sale) else None

    sweeper = HoldSweeper(stock, on_change=sale_changed)
    order_store = SqliteOrderStore.in_data_dir(settings.data_dir)
    payment_secret = hmac.new(settings.resolve_secret(), b"sandbox-payments",
                              hashlib.sha256).digest()
    payments = SandboxPaymentProvider(payment_secret)
    figures_box: list[FiguresPusher] = []
    order_service = OrderService(
        order_store, InventoryLedger(stock), CertificationAdapter(certificates), payments,
        payment_secret, now_ms=clock,
        on_figures_changed=lambda room_id, anchor_id: figures_box[0].changed(room_id, anchor_id),
        payment_timeout_ms=settings.payment_timeout_s * 1000,
        charge_timeout_ms=settings.charge_timeout_s * 1000,
    )
    commerce_routes = CommerceRoutes(
        Api(signer, settings.max_payload_bytes), sales, stock, order_service, catalog, rooms,
        edge)
    figures_pusher = FiguresPusher(commerce_routes.figures_of, edge.emit_to)
    figures_box.append(figures_pusher)

    async def payment_settled(body: bytes, signature: str) -> Order:
        order = await order_service.handle_payment_callback(body, signature)
        await push_order(edge.emit_to, order)
        return order

    payments.sink = payment_settled
    CommerceEvents(edge, stock, order_service)
    handoff = new_consumer(redis, order_store) if handoff_in_process else None
    # Housekeeping runs where the consumer is owned: with the in-process consumer, or in the
    # server (the first worker) that owns the consumer's process.
    upkeep = (OrderUpkeep(order_service, edge.emit_to, metrics)
              if handoff_in_process or settings.worker_index in (None, 0) else None)
    handshake_timeouts = metrics.add(Counter(
        "liveroom_socketio_handshake_timeouts_total",
        "Engine.IO sessions closed for not completing the Socket.IO connect in time."))
    handshakes = HandshakeDeadline(sio, settings.socket_connect_timeout_s,
                                   on_timeout=handshake_timeouts.inc)
    return Services(settings=settings,
                    addresses=addresses,
                    redis=redis, accounts=accounts, signer=signer, bus=bus, catalog=catalog,
                    rooms=rooms, sio=sio, edge=edge, viewer_pusher=pusher,
                    certificates=certificates, certificate_desk=desk,
                    expiry_watcher=expiry_watcher, media=media, ice=ice, media_router=router,
                    media_pusher=media_pusher, inventory_redis=inventory_redis,
                    inventory=stock, sweeper=sweeper, stock_pusher=stock_pusher, sales=sales,
                    order_store=order_store, payments=payments, orders=order_service,
                    handoff=handoff, order_upkeep=upkeep, figures_pusher=figures_pusher,
                    commerce_routes=commerce_routes, reaper=SlowClientReaper(sio),
                    handshakes=handshakes, metrics=metrics, redis_probe=RedisProbe(redis, metrics))


def create_app(settings: Settings, redis_url: str, *,
               handoff_in_process: bool = True,
               clock: Callable[[], int] = now_ms) -> web.Application:
    services = build_services(settings, redis_url, handoff_in_process=handoff_in_process,
                              clock=clock)
    bodies = BodyDeadline(settings.http_body_timeout_s)
    middlewares = [metrics_middleware(services.metrics), bodies.middleware]
    if settings.max_connections_per_address > 0:
        cap = ConnectionCap(services.addresses, settings.max_connections_per_address,
                            services.metrics)
        middlewares.append(cap.middleware)
    middlewares.append(error_middleware)
    app = web.Application(middlewares=middlewares,
                          client_max_size=settings.max_payload_bytes * 2)
    app[SERVICES_KEY] = services
    services.sio.attach(app)
    api = Api(services.signer, settings.max_payload_bytes)
    AccountRoutes(api, services.signer, services.accounts,
                  services.addresses).add_to(app.router)
    RoomRoutes(api, services.signer, services.catalog, services.rooms, services.edge,
               services.media_router, services.sales).add_to(app.router)
    CertificateRoutes(api, services.certificates, services.certificate_desk,
                      LinkOrigin(settings.public_url, default_allowed_hosts(settings))
                      ).add_to(app.router)
    services.commerce_routes.add_to(app.router)
    MediaRoutes(api, services.ice).add_to(app.router)
    pages = PageRoutes()
    pages.add_to(app.router)
    app.on_response_prepare.append(pages.on_response_prepare)
    app.on_response_prepare.append(add_security_headers)
    OpsRoutes(services.metrics, services.redis_probe).add_to(app.router)

    async def on_startup(_: web.Application) -> None:
        await services.start()

    async def on_cleanup(_: web.Application) -> None:
        await bodies.close()
        await services.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def services_of(app: web.Application) -> Services:
    return app[SERVICES_KEY]
