"""REST routes of flash sales, orders, after-sales, payments callbacks and analytics."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

import inventory
from orders import Actor, BadSignature, Order, OrderService

from ..catalog import Catalog
from ..commerce import RoomFigures, push_order
from ..exceptions import Forbidden, InvalidInput
from ..identity import User
from ..rooms import RoomService
from ..sales import SaleDesk
from ..sockets import SocketEdge
from ._base import Api, json_response

__all__ = ["CommerceRoutes"]

SIGNATURE_HEADER = "X-Sandbox-Signature"
MAX_WINDOW_DAYS = 365


def actor(user: User) -> Actor:
    return Actor(user.id, user.role.value)


class CommerceRoutes:
    def __init__(self, api: Api, desk: SaleDesk, stock: inventory.InventoryService,
                 orders: OrderService, catalog: Catalog, rooms: RoomService,
                 edge: SocketEdge, figures: RoomFigures) -> None:
        self.api = api
        self.desk = desk
        self.stock = stock
        self.orders = orders
        self.catalog = catalog
        self.rooms = rooms
        self.edge = edge
        self.figures = figures

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/rooms/{id}/sales", self.create_sale)
        router.add_get("/api/rooms/{id}/sales", self.room_sales)
        router.add_get("/api/sales/{id}", self.get_sale)
        router.add_post("/api/sales/{id}/end", self.end_sale)

        router.add_post("/api/orders", self.checkout)
        router.add_get("/api/orders", self.list_orders)
        router.add_get("/api/orders/{id}", self.get_order)
        router.add_post("/api/orders/{id}/pay", self._order_action(
            lambda a, oid, body: self.orders.pay(a, oid, body.get("payment"))))
        for name in ("cancel", "ship", "deliver", "complete"):
            router.add_post(f"/api/orders/{{id}}/{name}", self._lifecycle(name))
        router.add_post("/api/orders/{id}/return", self._claim_action(
            lambda a, oid, body: self.orders.request_return(a, oid, _reason(body, False))))
        router.add_post("/api/orders/{id}/return/received", self._order_action(
            lambda a, oid, body: self.orders.receive_return(a, oid)))
        router.add_post("/api/orders/{id}/refund-no-return", self._claim_action(
            lambda a, oid, body: self.orders.refund_no_return(a, oid, _reason(body, False))))
        router.add_post("/api/orders/{id}/counterfeit", self._claim_action(
            lambda a, oid, body: self.orders.counterfeit_claim(a, oid, _reason(body, True))))
        router.add_post("/api/orders/{id}/warranty", self._claim_action(
            lambda a, oid, body: self.orders.warranty_claim(a, oid, _reason(body, True))))
        router.add_get("/api/orders/{id}/buyback", self.buyback)
        router.add_post("/api/claims/{id}/uphold", self._claim_decision(uphold=True))
        router.add_post("/api/claims/{id}/reject", self._claim_decision(uphold=False))
        router.add_post("/api/payments/callback", self.payment_callback)
        router.add_get("/api/analytics", self.analytics)
        router.add_get("/api/rooms/{id}/figures", self.room_figures)

    # sales -----------------------------------------------------------------------------------

    async def create_sale(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        sale = await self.desk.create(user, request.match_info["id"],
                                      await self.api.payload(request))
        return json_response(await self.desk.announce(sale), 201)

    async def room_sales(self, request: web.Request) -> web.Response:
        sales = await self.desk.room_sales(request.match_info["id"])
        return json_response({"sales": await self.desk.views(sales)})

    async def get_sale(self, request: web.Request) -> web.Response:
        sale = await self.stock.get_sale(request.match_info["id"])
        return json_response(await self.desk.view(sale))

    async def end_sale(self, request: web.Request) -> web.Response:
        sale = await self.desk.end(self.api.user(request), request.match_info["id"])
        return json_response(await self.desk.announce(sale))

    # orders ----------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        return (await self.api.payload(request)).raw_object()

    async def checkout(self, request: web.Request) -> web.Response:
        caller = actor(self.api.user(request))
        order = await self.orders.checkout(caller, await self._body(request))
        return json_response({"ok": True, "order": await self.orders.view(caller, order)}, 201)

    async def list_orders(self, request: web.Request) -> web.Response:
        caller = actor(self.api.user(request))
        orders = await self.orders.list_orders(caller)
        return json_response({"orders": await self.orders.views(caller, orders)})

    async def get_order(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        detail = await self.orders.order_detail(actor(user), request.match_info["id"])
        return json_response({"order": detail})

    async def _tell_buyer(self, order: Order) -> None:
        await push_order(self.edge.emit_to, self.orders, order)

    def _order_action(self, call: Callable[[Actor, str, dict[str, Any]], Awaitable[Order]]
                      ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            caller = actor(self.api.user(request))
            order = await call(caller, request.match_info["id"], await self._body(request))
            await self._tell_buyer(order)
            return json_response({"order": await self.orders.view(caller, order)})

        return handler

    def _lifecycle(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def call(a: Actor, order_id: str, body: dict[str, Any]) -> Order:
            if name == "cancel":
                return await self.orders.cancel(a, order_id, _reason(body, False))
            method: Callable[[Actor, str], Awaitable[Order]] = getattr(self.orders, name)
            return await method(a, order_id)

        return self._order_action(call)

    def _claim_action(self, call: Callable[[Actor, str, dict[str, Any]], Awaitable[Any]]
                      ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            user = self.api.user(request)
            claim = await call(actor(user), request.match_info["id"], await self._body(request))
            return json_response({"claim": claim.to_public()}, 201)

        return handler

    def _claim_decision(self, uphold: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            a = actor(self.api.user(request))
            decide = self.orders.uphold_counterfeit if uphold else self.orders.reject_counterfeit
            claim = await decide(a, request.match_info["id"])
            # The buyer hears of the decision (and of the compensation paid) like other changes.
            await self._tell_buyer(await self.orders.get_order(a, claim.order_id))
            return json_response({"claim": claim.to_public()})

        return handler

    async def buyback(self, request: web.Request) -> web.Response:
        quote = await self.orders.buyback_quote(actor(self.api.user(request)),
                                                request.match_info["id"])
        return json_response({"quote": dataclasses.asdict(quote)})

    async def payment_callback(self, request: web.Request) -> web.Response:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature.isascii():
            # A hex digest is ASCII; other bytes (decoded by aiohttp as UTF-8 with surrogate
            # escapes) cannot match, and hmac.compare_digest refuses non-ASCII strings outright.
            raise BadSignature()
        raw = await request.read()
        order = await self.orders.handle_payment_callback(raw, signature)
        await self._tell_buyer(order)
        return json_response({"ok": True})

    # figures ---------------------------------------------------------------------------------

    async def analytics(self, request: web.Request) -> web.Response:
        a = actor(self.api.user(request))
        query = request.query
        try:
            window_days = int(query.get("window_days", "30"))
        except ValueError:
            raise InvalidInput("window_days must be a whole number") from None
        if not 1 <= window_days <= MAX_WINDOW_DAYS:
            raise InvalidInput(f"window_days must be between 1 and {MAX_WINDOW_DAYS}")
        scope = {"room_id": query.get("room") or None, "anchor_id": query.get("anchor") or None,
                 "brand": query.get("brand") or None, "window_ms": window_days * 86_400_000}
        # The report names its rooms; conversion needs their unique viewers.
        first = await self.orders.analytics(a, viewers={}, **scope)  # type: ignore[arg-type]
        viewers = await self.rooms.unique_viewers(f.key for f in first.rooms)
        report = await self.orders.analytics(a, viewers=viewers, **scope)  # type: ignore[arg-type]
        return json_response(report.to_public())

    async def room_figures(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        room = await self.catalog.get_room(request.match_info["id"])
        if room.anchor_id != user.id and not user.is_admin:
            raise Forbidden("only the room's anchor sees its figures")
        return json_response(await self.figures.of(room.id))


def _reason(body: dict[str, Any], required: bool) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise InvalidInput("reason must be a string")
    reason = reason.strip()
    if required and not reason:
        raise InvalidInput("reason is required: say what is wrong")
    if len(reason) > 1000:
        raise InvalidInput("reason must be at most 1000 characters")
    return reason
