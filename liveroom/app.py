"""The composition root: builds every service from the settings and wires the edges to them."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import redis.asyncio as aioredis
import socketio
from aiohttp import web

from inventory import AuctionService, HoldSweeper, InventoryService, StockLevel
from orders import OrderService, OrderStore, SandboxPaymentProvider
from trustbadges import CertificateService, ExpiryWatcher

from .accounts import AccountService, SandboxSms
from .addresses import ClientAddresses, parse_networks
from .auctions import (
    AuctionBroadcaster,
    AuctionCloser,
    AuctionDesk,
    BuyerBansFanout,
    room_ender,
    without_auction_lots,
)
from .bus import ControlBus
from .catalog import Catalog, Room
from .certification import BadgeFanout, CertificateDesk, ExpiryPlans
from .clock import now_ms
from .commerce import (
    CertificationAdapter,
    FiguresPusher,
    InventoryLedger,
    OrderUpkeep,
    PaymentCallbacks,
    RoomFigures,
)
from .coupons import CouponDesk, CouponPusher, CouponWalletAdapter
from .exceptions import UnknownProduct
from .follows import FollowerPusher, FollowService
from .handoff_process import new_consumer
from .hls import (
    HlsPackagers,
    HlsReader,
    HlsStore,
    PinMoment,
    Recorder,
    ReplayDesk,
    SaleMoment,
)
from .hooks import AsyncHook, Hook
from .http import Api
from .http._base import error_middleware
from .http.accounts import AccountRoutes
from .http.auctions import AuctionRoutes
from .http.certificates import CertificateRoutes, LinkOrigin, default_allowed_hosts
from .http.commerce import CommerceRoutes
from .http.coupons import CouponRoutes
from .http.hls import HlsRoutes, ReplayRoutes
from .http.lucky import LuckyRoutes
from .http.media import MediaRoutes
from .http.ops import OpsRoutes, RedisProbe, metrics_middleware, register_edge_gauges
from .http.pages import PageRoutes
from .http.rooms import RoomRoutes
from .http.transport import BodyDeadline, ConnectionCap, add_security_headers
from .identity import TokenSigner
from .lifecycle import Lifecycle
from .lucky import LuckyDesk, LuckyLoop
from .media import RELAY_USER_ID, IceConfig, MediaService
from .media_router import MediaRouter
from .metrics import Counter, Metrics
from .metrics_peers import MetricsPeers
from .redis_target import redis_client
from .rooms import RoomService
from .sales import SaleDesk, SoldOutRelay, StockBroadcaster
from .settings import Settings
from .sockets import SocketEdge
from .sockets._base import create_sio
from .sockets.auctions import AuctionEvents
from .sockets.commerce import CommerceEvents
from .sockets.coupons import CouponEvents
from .sockets.handshakes import HandshakeDeadline
from .sockets.lucky import LuckyEvents
from .sockets.media import MediaEvents, MediaHealthPusher
from .sockets.rooms import RoomEvents, ViewerCountPusher
from .sockets.slow_clients import SlowClientReaper
from .stores import certificate_service
from .stores import order_store as new_order_store
from .watch import WatchMeter, WatchTime

__all__ = ["Services", "create_app"]

SERVICES_KEY: web.AppKey[Services] = web.AppKey("services")
REDIS_POOL_SIZE = 32
INVENTORY_POOL_SIZE = 16


@dataclass
class Services:
    """Everything one server process runs, built once by ``build_services``; ``lifecycle``
    starts and stops the owners of background work among them."""

    settings: Settings
    lifecycle: Lifecycle
    # The client address of a request or connection, behind the trusted proxies if any.
    addresses: ClientAddresses
    redis: aioredis.Redis
    # The buy hot path's own small pool (the batcher keeps a few scripts in flight).
    inventory_redis: aioredis.Redis
    metrics: Metrics
    # None in a single process: its own metrics are the node's.
    metrics_peers: MetricsPeers | None
    redis_probe: RedisProbe
    bus: ControlBus
    signer: TokenSigner
    accounts: AccountService
    certificates: CertificateService
    catalog: Catalog
    certificate_desk: CertificateDesk
    sio: socketio.AsyncServer
    edge: SocketEdge
    # The ICE servers for pages (GET /api/rtc/config) and the relay, with TURN credentials.
    ice: IceConfig
    media: MediaService
    media_router: MediaRouter
    # LL-HLS: this process's packagers (rooms it relays) and what every process reads.
    hls_store: HlsStore
    hls_reader: HlsReader
    hls_packagers: HlsPackagers
    # Replays: recorded segments in <data-dir>/recordings/, described with the room's sales.
    recorder: Recorder
    replays: ReplayDesk
    inventory: InventoryService
    sales: SaleDesk
    auctions: AuctionService
    auction_desk: AuctionDesk
    auction_pusher: AuctionBroadcaster
    auction_closer: AuctionCloser
    rooms: RoomService
    order_store: OrderStore
    payments: SandboxPaymentProvider
    orders: OrderService
    figures: RoomFigures
    # None in a worker that does not own the hand-off consumer (--workers N, N > 0).
    order_upkeep: OrderUpkeep | None
    reaper: SlowClientReaper
    # Closes Engine.IO sessions that never complete the Socket.IO connect.
    handshakes: HandshakeDeadline
    # Followers of anchors, lucky bags, and the watch time lucky bags may ask for.
    follows: FollowService
    lucky: LuckyDesk
    watch: WatchTime
    # Coupon drops: grabbed in batches, in wallets, applied at checkout.
    coupons: CouponDesk

    async def start(self) -> None:
        await self.lifecycle.start()

    async def close(self) -> None:
        await self.lifecycle.close()


def build_services(settings: Settings, redis_url: str, *,
                   handoff_in_process: bool = True,
                   clock: Callable[[], int] = now_ms) -> Services:
    """Build every service once, in dependency order, and register each owner of background
    work with the lifecycle where it is built: they start in that order and stop in the
    reverse one, so what uses a thing stops before the thing. ``clock`` is the one clock of
    every service (wall-clock ms); tests may move it by hand. Cross-object notifications go
    through hooks made before both sides (``liveroom/hooks.py``)."""
    life = Lifecycle()
    secret = settings.resolve_secret()
    metrics = Metrics(node=settings.node)

    # Shared state: Redis (closed last) and the bus between processes.
    redis = redis_client(redis_url, REDIS_POOL_SIZE)
    life.register("redis", close=redis.aclose)
    inventory_redis = redis_client(redis_url, INVENTORY_POOL_SIZE)
    life.register("inventory redis", close=inventory_redis.aclose)
    # Under --workers N, a scrape landing on any worker renders the whole node.
    peers: MetricsPeers | None = None
    if settings.workers > 1 and settings.worker_index is not None:
        peers = MetricsPeers(metrics, settings.data_dir, settings.worker_index, settings.workers)
        life.register("metrics peers", start=peers.start, close=peers.close)
    redis_probe = RedisProbe(redis, metrics)
    life.register("redis probe", start=redis_probe.start, close=redis_probe.close)
    bus = ControlBus(redis)
    process_name = f"{socket.gethostname()}:{os.getpid()}"  # this process, among all nodes
    life.register("control bus", start=bus.start, close=bus.close)

    # Who is who.
    addresses = ClientAddresses(parse_networks(settings.trusted_proxies),
                                parse_networks(settings.unlimited_addresses))
    signer = TokenSigner(secret, settings.token_ttl_s, clock)
    accounts = AccountService(
        redis, secret, SandboxSms(), clock, echo_codes=settings.otp_echo, addresses=addresses,
        codes_per_address_per_hour=settings.otp_codes_per_address_per_hour,
        guest_sessions_per_address_per_min=settings.guest_sessions_per_address_per_min)

    # Certificates, and the catalog whose products show their badges.
    certificates = certificate_service(settings, clock)
    life.register("certificates", start=certificates.start, close=certificates.close)
    catalog = Catalog(redis, clock, badge_lookup=certificates.badges_for_many)
    certificate_desk = CertificateDesk(certificates, catalog)

    # The Socket.IO edge.
    sio = create_sio(settings, redis_url)
    edge = SocketEdge(sio, signer, settings, metrics, addresses)
    certificates.add_listener(BadgeFanout(catalog, certificate_desk, edge.emit_to).on_change)
    expiry_watcher = ExpiryWatcher(certificates)
    certificates.add_listener(ExpiryPlans(bus, expiry_watcher).on_change)
    life.register("certificate expiry watcher", start=expiry_watcher.start,
                  close=expiry_watcher.close)

    # Live video: the relay, which process holds a room's broadcast, and its health pushes.
    media_changed: Hook[[str]] = Hook("media changed")
    ice = IceConfig(settings, clock)
    media = MediaService(
        # Asked per peer connection: short-lived TURN credentials are minted fresh each time.
        partial(ice.servers_for, RELAY_USER_ID),
        now_ms=clock, on_change=media_changed.fire,
        connect_timeout_s=settings.rtc_connect_timeout_s, seats=settings.webrtc_seats,
    )
    life.register("media relay", close=media.close)
    media_router = MediaRouter(media, redis, bus, process_name,
                               several_workers=settings.shares_redis)
    media_pusher = MediaHealthPusher(edge, media_router)
    media_changed.connect(media_pusher.changed)
    life.register("media health pusher", start=media_pusher.start, close=media_pusher.close)
    register_edge_gauges(metrics, edge, media)
    hls_store = HlsStore(redis, bus)
    hls_reader = HlsReader(hls_store, bus, clock)
    recorder = Recorder(settings.data_dir / "recordings")

    async def should_record(room_id: str) -> bool:
        return (await catalog.get_room(room_id)).record

    hls_packagers = HlsPackagers(media, hls_store, recorder=recorder,
                                 should_record=should_record)
    media_changed.connect(hls_packagers.changed)
    life.register("hls packagers", close=hls_packagers.close)
    MediaEvents(edge, media_router, catalog, media_pusher)

    # Flash sales. Registered so that they stop in this order: buys stop and the accepted ones
    # are decided (inventory), their stock is pushed (stock pusher), and the script connection
    # closes after everything else that runs scripts (sweeper, orders).
    stock_changed: Hook[[StockLevel]] = Hook("stock changed")
    sold_out_news: Hook[[str, bool]] = Hook("sold-out news")
    inventory = InventoryService(
        inventory_redis, now_ms=clock, on_stock_change=stock_changed.fire,
        on_sold_out_news=sold_out_news.fire,
        max_batch_window_s=settings.buy_batch_max_ms / 1000,
        target_batch=settings.buy_batch_target,
        confirm_with_replica=settings.redis_wait_replica,
        confirm_timeout_ms=settings.redis_wait_timeout_ms)
    sales = SaleDesk(redis, catalog, inventory, clock, edge.emit_to)
    stock_pusher = StockBroadcaster(edge.emit_to, emit_together=edge.emit_together,
                                    sold_out_news=sales.sold_out_news,
                                    claimed_view=sales.claimed_view,
                                    room_size=edge.local_members, now_ms=clock)
    stock_changed.connect(stock_pusher.record)
    sold_out_relay = SoldOutRelay(bus, inventory, process_name)
    sold_out_news.connect(sold_out_relay.tell)
    life.register("sold-out relay", close=sold_out_relay.close)
    life.register("inventory scripts", close=inventory.disconnect)
    life.register("stock pusher", start=stock_pusher.start, close=stock_pusher.close)
    life.register("inventory", start=inventory.start, close=inventory.close)
    async def sales_of(room_id: str) -> list[SaleMoment]:
        return [SaleMoment(sale.id, sale.product_id, sale.title, sale.starts_at)
                for sale in await sales.room_sales(room_id, limit=100)]

    async def pins_of(room_id: str) -> list[PinMoment]:
        moments = []
        for product_id, at in await catalog.pins(room_id):
            try:
                product = await catalog.get_product(product_id)
            except UnknownProduct:
                continue
            moments.append(PinMoment(product_id, product.title, at))
        return moments

    replays = ReplayDesk(recorder, catalog.get_room, sales_of, pins_of)
    sweeper = HoldSweeper(inventory, on_change=without_auction_lots(stock_pusher.announce))
    life.register("hold sweeper", start=sweeper.start, close=sweeper.close)

    # Followers, watch time, and lucky bags (whose prizes are holds in free sales).
    followers_changed: Hook[[str]] = Hook("followers changed")
    anchor_went_live: Hook[[Room]] = Hook("anchor went live")
    follows = FollowService(redis, catalog, clock, edge.emit_to, followers_changed.fire,
                            anchor_went_live.fire)
    follower_pusher = FollowerPusher(follows)
    followers_changed.connect(follower_pusher.changed)
    anchor_went_live.connect(follower_pusher.went_live)
    life.register("follower pusher", start=follower_pusher.start, close=follower_pusher.close)
    watch = WatchTime(redis, clock)
    watch_meter = WatchMeter(watch, lambda: [(room_id, conn.user.id)
                                             for conn in edge.connections.values()
                                             for room_id in conn.rooms])
    life.register("watch meter", start=watch_meter.start, close=watch_meter.close)
    lucky = LuckyDesk(redis, catalog, follows, watch, inventory, certificates.sign_statement,
                      clock, edge.emit_to)
    lucky_loop = LuckyLoop(lucky)
    life.register("lucky loop", start=lucky_loop.start, close=lucky_loop.close)
    LuckyEvents(edge, lucky)
    # Live auctions: bids batched and decided like buys, each in the unit's own sale; the
    # closer ends them on time and makes the second-chance offer (docs/inventory.md).
    auctions = AuctionService(
        inventory_redis, now_ms=clock, max_batch_window_s=settings.buy_batch_max_ms / 1000,
        target_batch=settings.buy_batch_target)
    auction_desk = AuctionDesk(redis, catalog, auctions, clock)
    auction_pusher = AuctionBroadcaster(edge.emit_to, clock)
    auction_closer = AuctionCloser(auctions, auction_pusher, edge.emit_to, clock)
    life.register("auction scripts", close=auctions.disconnect)
    life.register("auction pusher", start=auction_pusher.start, close=auction_pusher.close)
    life.register("auctions", start=auctions.start, close=auctions.close)
    life.register("auction closer", start=auction_closer.start, close=auction_closer.close)
    AuctionEvents(edge, auctions, auction_pusher.record)

    # Coupon drops: grabs batched and decided in Lua like buys; orders use them at checkout.
    coupons = CouponDesk(redis, catalog, clock, edge.emit_to,
                         max_batch_window_s=settings.buy_batch_max_ms / 1000,
                         target_batch=settings.buy_batch_target,
                         room_size=edge.local_members)
    life.register("coupon grabs", start=coupons.start, close=coupons.close)
    coupon_pusher = CouponPusher(coupons)
    life.register("coupon pusher", start=coupon_pusher.start, close=coupon_pusher.close)
    CouponEvents(edge, coupons)

    # Rooms: presence, chat, moderation (whose bans reach the sales).
    rooms = RoomService(redis, catalog, clock, chat_max_chars=settings.chat_max_chars,
                        buyer_bans=BuyerBansFanout(sales, auction_desk), addresses=addresses,
                        chat_per_speaker=settings.chat_per_speaker_per_10s,
                        chat_per_address=settings.chat_per_address_per_10s,
                        state_extras=(media_pusher.room_state, sales.room_state,
                                      lucky.room_state, follows.room_state,
                                      auction_desk.room_state, coupons.room_state))
    viewer_pusher = ViewerCountPusher(edge, rooms)
    life.register("viewer count pusher", start=viewer_pusher.start, close=viewer_pusher.close)
    RoomEvents(edge, rooms, bus, viewer_pusher)

    # Orders: the store, payments, the service, and what tells people of their changes.
    order_store = new_order_store(settings)
    life.register("order store", start=order_store.open, close=order_store.close)
    payment_secret = hmac.new(secret, b"sandbox-payments", hashlib.sha256).digest()
    payment_callbacks: AsyncHook[[bytes, str]] = AsyncHook("payment callbacks")
    payments = SandboxPaymentProvider(payment_secret, payment_callbacks.fire)
    life.register("payments", close=payments.close)
    figures_changed: Hook[[str, str]] = Hook("figures changed")
    orders = OrderService(
        order_store, InventoryLedger(inventory), CertificationAdapter(certificates), payments,
        payment_secret, now_ms=clock, on_figures_changed=figures_changed.fire,
        payment_timeout_ms=settings.payment_timeout_s * 1000,
        charge_timeout_ms=settings.charge_timeout_s * 1000,
        coupons=CouponWalletAdapter(coupons),
    )
    payment_callbacks.connect(PaymentCallbacks(orders, edge.emit_to).deliver)
    figures = RoomFigures(orders, rooms)
    figures_pusher = FiguresPusher(figures.of, edge.emit_to)
    figures_changed.connect(figures_pusher.changed)
    life.register("figures pusher", start=figures_pusher.start, close=figures_pusher.close)
    CommerceEvents(edge, inventory, orders)
    if handoff_in_process:  # else a process of its own (liveroom serve)
        handoff = new_consumer(settings, redis, order_store)
        life.register("hand-off consumer", start=handoff.start, close=handoff.close)
    # Housekeeping runs where the consumer is owned: with the in-process consumer, or in the
    # server (the first worker) that owns the consumer's process.
    order_upkeep = None
    if handoff_in_process or settings.worker_index in (None, 0):
        order_upkeep = OrderUpkeep(orders, edge.emit_to, metrics)
        life.register("order upkeep", start=order_upkeep.begin, close=order_upkeep.close)

    # Socket upkeep: slow clients cut, handshakes that never finish closed.
    reaper = SlowClientReaper(sio)
    life.register("slow-client reaper", start=reaper.start, close=reaper.close)
    handshake_timeouts = metrics.add(Counter(
        "liveroom_socketio_handshake_timeouts_total",
        "Engine.IO sessions closed for not completing the Socket.IO connect in time."))
    handshakes = HandshakeDeadline(sio, settings.socket_connect_timeout_s,
                                   on_timeout=handshake_timeouts.inc)
    life.register("socket.io handshake deadline", start=handshakes.start,
                  close=handshakes.close)

    return Services(
        settings=settings, lifecycle=life, addresses=addresses, redis=redis,
        inventory_redis=inventory_redis, metrics=metrics, metrics_peers=peers,
        redis_probe=redis_probe, bus=bus,
        signer=signer, accounts=accounts, certificates=certificates, catalog=catalog,
        certificate_desk=certificate_desk, sio=sio, edge=edge, ice=ice, media=media,
        media_router=media_router, hls_store=hls_store, hls_reader=hls_reader,
        hls_packagers=hls_packagers, recorder=recorder, replays=replays, inventory=inventory,
        sales=sales, auctions=auctions, auction_desk=auction_desk,
        auction_pusher=auction_pusher, auction_closer=auction_closer, rooms=rooms,
        order_store=order_store, payments=payments, orders=orders, figures=figures,
        order_upkeep=order_upkeep, reaper=reaper, handshakes=handshakes,
        follows=follows, lucky=lucky, watch=watch, coupons=coupons)


def create_app(settings: Settings, redis_url: str, *,
               handoff_in_process: bool = True,
               clock: Callable[[], int] = now_ms) -> web.Application:
    """The web app of one server process: the services, the middlewares (metrics, the body
    deadline, the per-address cap, errors as JSON), and every route."""
    services = build_services(settings, redis_url, handoff_in_process=handoff_in_process,
                              clock=clock)
    bodies = BodyDeadline(settings.http_body_timeout_s)
    services.lifecycle.register("http body deadlines", close=bodies.close)
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
               services.media_router, services.sales,
               room_opened=services.follows.room_opened,
               room_ended=room_ender(services.auction_desk, services.auction_closer),
               ).add_to(app.router)
    CertificateRoutes(api, services.certificates, services.certificate_desk,
                      LinkOrigin(settings.public_url, default_allowed_hosts(settings))
                      ).add_to(app.router)
    CommerceRoutes(api, services.sales, services.inventory, services.orders, services.catalog,
                   services.rooms, services.edge, services.figures).add_to(app.router)
    AuctionRoutes(api, services.auction_desk, services.auction_pusher,
                  services.auction_closer).add_to(app.router)
    MediaRoutes(api, services.ice).add_to(app.router)
    LuckyRoutes(api, services.lucky, services.follows).add_to(app.router)
    CouponRoutes(api, services.coupons).add_to(app.router)
    HlsRoutes(services.hls_reader, services.hls_store, services.metrics).add_to(app.router)
    ReplayRoutes(services.replays, services.recorder).add_to(app.router)
    pages = PageRoutes()
    pages.add_to(app.router)
    app.on_response_prepare.append(pages.on_response_prepare)
    app.on_response_prepare.append(add_security_headers)
    OpsRoutes(services.metrics, services.redis_probe,
              services.metrics_peers).add_to(app.router)

    async def on_startup(_: web.Application) -> None:
        await services.start()

    async def on_cleanup(_: web.Application) -> None:
        await services.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def services_of(app: web.Application) -> Services:
    return app[SERVICES_KEY]
