"""Every role x every role-restricted action, in one table, against the real server.

Roles: ``none`` (no token), ``guest`` (a guest session from ``POST /api/session``), ``viewer``
(a buyer account verified by phone; the buyer in the order rows), ``owner`` (the anchor who owns
the room, product, sale and order), ``anchor2`` (another anchor), ``inspector`` (the one who
issued the certificate), ``admin``.

Outcomes: ``ok`` (2xx or an ``ok`` ack), ``refused`` (403: ``forbidden`` / ``not_allowed`` /
``not_holder`` / ``not_reservation_holder``), ``unauth`` (401, or Socket.IO connect refused),
``hidden`` (404: the caller may not even see the order or claim), ``not_broadcasting`` (past the
role check, refused on the SDP: an offer that sends no media). Destructive actions get fresh
objects for every cell.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio

from liveroom.clock import now_ms
from tests.server_harness import Client, LiveServer, live_server

ROLES = ("none", "guest", "viewer", "owner", "anchor2", "inspector", "admin")
ADDRESS = {"name": "Wang Fang", "phone": "13800138000", "line1": "12 Jade Road", "city": "Hefei"}
VAULT = {"material": "jade", "weight_mg": 1000, "grade": "A", "appraiser": "Vault 1",
         "photo_sha256": ["cd" * 32]}
INSPECTION = {"model": "iPhone 13 128GB", "imei": "490154203237518", "battery_health_pct": 88,
              "screen_condition": "light_wear", "body_condition": "flawless",
              "components": {"screen": "original"}, "tests": {"camera": "pass"},
              "buyback_price_cents": 150_000}
REFUSED = {"forbidden", "not_allowed", "not_holder", "not_reservation_holder"}
HIDDEN = {"order_not_found", "claim_not_found"}
U, R, OK, H = "unauth", "refused", "ok", "hidden"
# Buying needs a buyer account (a phone), whatever the role.
V = "verification_required"

# action -> expected outcome per role, in ROLES order.
MATRIX: dict[str, tuple[str, ...]] = {
    "GET /api/me":                        (U, OK, OK, OK, OK, OK, OK),
    "POST /api/rooms":                    (U, R, R, OK, OK, R, OK),
    "POST /api/products":                 (U, R, R, OK, OK, R, OK),
    "GET /api/products?anchor=owner":     (U, R, R, OK, R, R, OK),
    "POST /api/rooms/{id}/pin":           (U, R, R, OK, R, R, OK),
    "POST /api/rooms/{id}/sales":         (U, R, R, OK, R, R, OK),
    "POST /api/sales/{id}/end":           (U, R, R, OK, R, R, OK),
    "POST /api/rooms/{id}/end":           (U, R, R, OK, R, R, OK),
    "GET /api/rooms/{id}/figures":        (U, R, R, OK, R, R, OK),
    "GET /api/analytics":                 (U, R, R, OK, OK, R, OK),
    "POST /api/certificates":             (U, R, R, R, R, OK, OK),
    "GET /api/certificates/{id}/audit":   (U, R, R, R, R, OK, OK),
    "POST /api/certificates/{id}/revoke": (U, R, R, R, R, OK, OK),
    "GET /api/orders":                    (U, OK, OK, OK, OK, OK, OK),
    "GET /api/orders/{id}":               (U, H, OK, OK, H, H, OK),
    "POST /api/orders/{id}/pay":          (U, H, OK, R, H, H, R),
    "POST /api/orders/{id}/ship":         (U, H, R, OK, H, H, OK),
    "POST /api/orders/{id}/deliver":      (U, H, R, OK, H, H, OK),
    "POST /api/orders/{id}/complete":     (U, H, OK, R, H, H, OK),
    "POST /api/orders/{id}/cancel":       (U, H, OK, OK, H, H, OK),
    "POST /api/orders/{id}/return":       (U, H, OK, R, H, H, R),
    "POST /api/orders/{id}/return/received": (U, H, R, OK, H, H, OK),
    "POST /api/orders/{id}/refund-no-return": (U, H, OK, R, H, H, R),
    "POST /api/orders/{id}/counterfeit":  (U, H, OK, R, H, H, R),
    "POST /api/orders/{id}/warranty":     (U, H, OK, R, H, H, R),
    "GET /api/orders/{id}/buyback":       (U, H, OK, R, H, H, R),
    "POST /api/claims/{id}/uphold":       (U, H, R, R, H, H, OK),
    "POST /api/claims/{id}/reject":       (U, H, R, R, H, H, OK),
    "buy":                                (U, V, OK, V, V, V, V),
    "checkout (viewer's hold)":           (U, R, OK, R, R, R, R),
    "release (viewer's hold)":            (U, R, OK, R, R, R, R),
    "mod:mute":                           (U, R, R, OK, R, R, OK),
    "mod:unmute":                         (U, R, R, OK, R, R, OK),
    "mod:ban":                            (U, R, R, OK, R, R, OK),
    "mod:unban":                          (U, R, R, OK, R, R, OK),
    "mod:slow":                           (U, R, R, OK, R, R, OK),
    "rtc:publish":                        (U, R, R, "not_broadcasting", R, R, "not_broadcasting"),
    "rtc:stop":                           (U, R, R, OK, R, R, OK),
}


def outcome_of_code(code: str) -> str:
    if code in REFUSED:
        return R
    if code in HIDDEN:
        return H
    if code.startswith("token_") or code == "unauthorized":
        return U
    return code


@dataclass
class Scene:
    server: LiveServer
    tokens: dict[str, str]
    room: str
    product: str
    jewel: str
    sale: str
    buyer: Client
    sockets: dict[str, Client] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    # product id -> its sale, for orders of other categories (oil, inspected phone)
    product_sales: dict[str, str] = field(default_factory=dict)
    oil: str = ""
    phone: str = ""

    async def rest(self, role: str, method: str, path: str, body: Any = None) -> str:
        status, answer = await self.server.request(method, path, self.tokens.get(role), body)
        if 200 <= status < 300:
            return OK
        assert isinstance(answer, dict), (method, path, status, answer)
        assert "error" in answer, (method, path, status, answer)
        return outcome_of_code(answer["error"]["code"])

    async def as_owner(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.server.request(method, path, self.tokens["owner"], body)
        assert status < 300, (method, path, answer)
        return answer

    # fresh objects for destructive cells -----------------------------------------------------

    async def new_room(self) -> str:
        return str((await self.as_owner("POST", "/api/rooms", {"title": "Cell"}))["id"])

    async def new_sale(self, room: str | None = None, product: str | None = None) -> str:
        sale = await self.as_owner("POST", f"/api/rooms/{room or self.room}/sales", {
            "product_id": product or self.product, "stock": 1000, "price_cents": 500,
            "per_user_limit": 1000, "starts_in_s": 0, "duration_s": 3600, "hold_s": 600})
        return str(sale["id"])

    async def new_hold(self, product: str | None = None) -> str:
        sale = self.sale
        if product is not None:
            if product not in self.product_sales:
                self.product_sales[product] = await self.new_sale(product=product)
            sale = self.product_sales[product]
        ack = await self.buyer.call("buy", {"sale": sale, "qty": 1,
                                            "request_id": f"cell-{next(self.counter)}"})
        assert ack["ok"], ack
        return str(ack["reservation"]["id"])

    async def new_order(self, product: str | None = None, payment: Any = "cod") -> str:
        ack = await self.buyer.call("checkout", {"reservation": await self.new_hold(product),
                                                 "address": ADDRESS, "payment": payment})
        assert ack["ok"], ack
        return str(ack["order"]["id"])

    async def as_buyer(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.server.request(method, path, self.tokens["viewer"], body)
        assert status < 300, (method, path, answer)
        return answer

    async def order_in(self, status: str, product: str | None = None) -> str:
        """A fresh cash-on-delivery order moved to ``status`` by its anchor and buyer."""
        order = await self.new_order(product)
        steps = ["shipped", "delivered", "return_requested"]
        for step in steps[:steps.index(status) + 1]:
            if step == "shipped":
                await self.as_owner("POST", f"/api/orders/{order}/ship")
            elif step == "delivered":
                await self.as_owner("POST", f"/api/orders/{order}/deliver")
            else:
                await self.as_buyer("POST", f"/api/orders/{order}/return", {})
        return order

    async def unpaid_order(self) -> str:
        """An online order whose card was declined: unpaid, and no payment in progress."""
        order = await self.new_order(payment={"method": "online", "card": "4000000000000002"})
        for _ in range(1500):  # bounds failure only
            answer = await self.as_owner("GET", f"/api/orders/{order}")
            if [p["status"] for p in answer["order"]["payments"]] == ["declined"]:
                return order
            await asyncio.sleep(0.02)
        raise AssertionError(f"the decline of {order} never arrived")

    async def new_claim(self) -> str:
        order = await self.order_in("delivered")
        answer = await self.as_buyer("POST", f"/api/orders/{order}/counterfeit",
                                     {"reason": "the seal is fake"})
        return str(answer["claim"]["id"])

    async def new_certificate(self) -> str:
        status, answer = await self.server.request(
            "POST", "/api/certificates", self.tokens["inspector"],
            {"kind": "vault", "product_id": self.jewel, "details": VAULT})
        assert status == 201, answer
        return str(answer["id"])

    async def socket(self, role: str) -> Client | None:
        """The role's joined socket; None when the server refused to connect it."""
        if role not in self.sockets:
            if role not in self.tokens:
                return None
            client = await self.server.connect(self.tokens[role])
            assert (await client.call("join", {"room": self.room}))["ok"]
            self.sockets[role] = client
        return self.sockets[role]

    async def emit(self, role: str, event: str, payload: dict[str, Any]) -> str:
        client = await self.socket(role)
        if client is None:
            return U
        ack = await client.call(event, payload)
        return OK if ack["ok"] else outcome_of_code(ack["error"]["code"])


Action = Callable[[Scene, str], Awaitable[str]]


async def _pin(s: Scene, role: str) -> str:
    return await s.rest(role, "POST", f"/api/rooms/{s.room}/pin", {"product_id": s.product})


async def _create_sale(s: Scene, role: str) -> str:
    return await s.rest(role, "POST", f"/api/rooms/{s.room}/sales", {
        "product_id": s.product, "stock": 3, "price_cents": 500, "per_user_limit": 1,
        "starts_in_s": 0, "duration_s": 60, "hold_s": 60})


async def _socket_on_hold(event: str, s: Scene, role: str) -> str:
    hold = await s.new_hold()
    payload: dict[str, Any] = {"reservation": hold}
    if event == "checkout":
        payload |= {"address": ADDRESS, "payment": "cod"}
    return await s.emit(role, event, payload)


ACTIONS: dict[str, Action] = {
    "GET /api/me": lambda s, r: s.rest(r, "GET", "/api/me"),
    "POST /api/rooms": lambda s, r: s.rest(r, "POST", "/api/rooms", {"title": "Mine"}),
    "POST /api/products": lambda s, r: s.rest(r, "POST", "/api/products", {
        "title": "Tea", "category": "tea", "price_cents": 100}),
    "GET /api/products?anchor=owner": lambda s, r: s.rest(
        r, "GET", "/api/products?anchor=u_owner"),
    "POST /api/rooms/{id}/pin": _pin,
    "POST /api/rooms/{id}/sales": _create_sale,
    "POST /api/sales/{id}/end": lambda s, r: _then(
        s.new_sale(), lambda sale: s.rest(r, "POST", f"/api/sales/{sale}/end")),
    "POST /api/rooms/{id}/end": lambda s, r: _then(
        s.new_room(), lambda room: s.rest(r, "POST", f"/api/rooms/{room}/end")),
    "GET /api/rooms/{id}/figures": lambda s, r: s.rest(r, "GET", f"/api/rooms/{s.room}/figures"),
    "GET /api/analytics": lambda s, r: s.rest(r, "GET", "/api/analytics"),
    "POST /api/certificates": lambda s, r: s.rest(r, "POST", "/api/certificates", {
        "kind": "vault", "product_id": s.jewel, "details": VAULT}),
    "GET /api/certificates/{id}/audit": lambda s, r: _then(
        s.new_certificate(), lambda c: s.rest(r, "GET", f"/api/certificates/{c}/audit")),
    "POST /api/certificates/{id}/revoke": lambda s, r: _then(
        s.new_certificate(), lambda c: s.rest(r, "POST", f"/api/certificates/{c}/revoke",
                                              {"reason": "test"})),
    "GET /api/orders": lambda s, r: s.rest(r, "GET", "/api/orders"),
    "GET /api/orders/{id}": lambda s, r: _then(
        s.new_order(), lambda o: s.rest(r, "GET", f"/api/orders/{o}")),
    "POST /api/orders/{id}/pay": lambda s, r: _then(
        s.unpaid_order(), lambda o: s.rest(r, "POST", f"/api/orders/{o}/pay",
                                           {"payment": "cod"})),
    "POST /api/orders/{id}/ship": lambda s, r: _then(
        s.new_order(), lambda o: s.rest(r, "POST", f"/api/orders/{o}/ship")),
    "POST /api/orders/{id}/deliver": lambda s, r: _then(
        s.order_in("shipped"), lambda o: s.rest(r, "POST", f"/api/orders/{o}/deliver")),
    "POST /api/orders/{id}/complete": lambda s, r: _then(
        s.order_in("delivered"), lambda o: s.rest(r, "POST", f"/api/orders/{o}/complete")),
    "POST /api/orders/{id}/cancel": lambda s, r: _then(
        s.new_order(), lambda o: s.rest(r, "POST", f"/api/orders/{o}/cancel", {})),
    "POST /api/orders/{id}/return": lambda s, r: _then(
        s.order_in("delivered"), lambda o: s.rest(r, "POST", f"/api/orders/{o}/return", {})),
    "POST /api/orders/{id}/return/received": lambda s, r: _then(
        s.order_in("return_requested"),
        lambda o: s.rest(r, "POST", f"/api/orders/{o}/return/received")),
    "POST /api/orders/{id}/refund-no-return": lambda s, r: _then(
        s.order_in("delivered", s.oil),
        lambda o: s.rest(r, "POST", f"/api/orders/{o}/refund-no-return", {})),
    "POST /api/orders/{id}/counterfeit": lambda s, r: _then(
        s.order_in("delivered"), lambda o: s.rest(r, "POST", f"/api/orders/{o}/counterfeit",
                                                  {"reason": "the seal is fake"})),
    "POST /api/orders/{id}/warranty": lambda s, r: _then(
        s.order_in("delivered", s.phone), lambda o: s.rest(
            r, "POST", f"/api/orders/{o}/warranty", {"reason": "the speaker crackles"})),
    "GET /api/orders/{id}/buyback": lambda s, r: _then(
        s.order_in("delivered", s.phone), lambda o: s.rest(r, "GET", f"/api/orders/{o}/buyback")),
    "POST /api/claims/{id}/uphold": lambda s, r: _then(
        s.new_claim(), lambda c: s.rest(r, "POST", f"/api/claims/{c}/uphold")),
    "POST /api/claims/{id}/reject": lambda s, r: _then(
        s.new_claim(), lambda c: s.rest(r, "POST", f"/api/claims/{c}/reject")),
    "checkout (viewer's hold)": lambda s, r: _socket_on_hold("checkout", s, r),
    "release (viewer's hold)": lambda s, r: _socket_on_hold("release", s, r),
    "mod:mute": lambda s, r: s.emit(r, "mod:mute", {"room": s.room, "user": "u_target",
                                                    "duration_s": 60}),
    "mod:unmute": lambda s, r: s.emit(r, "mod:unmute", {"room": s.room, "user": "u_target"}),
    "mod:ban": lambda s, r: s.emit(r, "mod:ban", {"room": s.room, "user": "u_target"}),
    "buy": lambda s, r: s.emit(r, "buy", {"sale": s.sale, "qty": 1,
                                          "request_id": f"cell-{next(s.counter)}"}),
    "mod:unban": lambda s, r: s.emit(r, "mod:unban", {"room": s.room, "user": "u_target"}),
    "mod:slow": lambda s, r: s.emit(r, "mod:slow", {"room": s.room, "seconds": 0}),
    "rtc:publish": lambda s, r: s.emit(r, "rtc:publish", {"room": s.room, "type": "offer",
                                                          "sdp": "v=0\r\n"}),
    "rtc:stop": lambda s, r: s.emit(r, "rtc:stop", {"room": s.room}),
}


async def _then(make: Awaitable[str], act: Callable[[str], Awaitable[str]]) -> str:
    return await act(await make)


@pytest.fixture
async def scene(redis: aioredis.Redis, redis_url: str, data_dir: Path) -> AsyncIterator[Scene]:
    # Buy and event limits lifted: the matrix buys a fresh hold for many cells from one socket.
    async with live_server(redis_url, data_dir, buy_rate_per_s=1e6, buy_burst=10**6,
                           event_rate_per_s=1e6, event_burst=10**6, user_event_rate_per_s=0,
                           address_event_rate_per_s=0) as server:
        _, guest = await server.request("POST", "/api/session", json={"name": "Guest"})
        tokens = {"guest": guest["token"],
                  "viewer": server.buyer_token("Vi", user_id="u_viewer"),
                  "owner": server.token("anchor", "Mei", user_id="u_owner"),
                  "anchor2": server.token("anchor", "Lan", user_id="u_other"),
                  "inspector": server.token("inspector", "Ins", user_id="u_ins"),
                  "admin": server.token("admin", "Root", user_id="u_admin")}
        owner = tokens["owner"]
        _, room = await server.request("POST", "/api/rooms", owner, {"title": "Matrix"})
        _, tea = await server.request("POST", "/api/products", owner, {
            "title": "Tea", "category": "tea", "price_cents": 900})
        _, jewel = await server.request("POST", "/api/products", owner, {
            "title": "Ring", "category": "jewelry", "price_cents": 90_000})
        _, oil = await server.request("POST", "/api/products", owner, {
            "title": "Lavender oil", "category": "essential_oil", "price_cents": 4_500})
        _, phone = await server.request("POST", "/api/products", owner, {
            "title": "Phone", "category": "phone_used", "price_cents": 200_000})
        # The owner may offer refund-no-return on oils; the phone is inspected (warranty, buyback).
        for cert in ({"kind": "refund_no_return", "anchor_id": "u_owner",
                      "category": "essential_oil",
                      "details": {"valid_from": now_ms(), "valid_until": now_ms() + 86_400_000}},
                     {"kind": "inspection", "product_id": phone["id"], "details": INSPECTION}):
            status, issued = await server.request("POST", "/api/certificates", tokens["admin"],
                                                  cert)
            assert status == 201, issued
        buyer = await server.connect(tokens["viewer"])
        assert (await buyer.call("join", {"room": room["id"]}))["ok"]
        s = Scene(server, tokens, room["id"], tea["id"], jewel["id"], "", buyer,
                  oil=oil["id"], phone=phone["id"])
        s.sale = await s.new_sale()
        yield s


async def test_every_role_against_every_restricted_action(scene: Scene) -> None:
    anonymous = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):  # the socket rows' "none" column
        await anonymous.connect(scene.server.url, transports=["websocket"])
    mismatches = []
    for action, expected in MATRIX.items():
        for role, want in zip(ROLES, expected, strict=True):
            got = await ACTIONS[action](scene, role)
            if got != want:
                mismatches.append(f"{action:38} {role:10} expected {want:14} got {got}")
    assert not mismatches, "role matrix mismatches:\n" + "\n".join(mismatches)
    assert set(ACTIONS) == set(MATRIX)
