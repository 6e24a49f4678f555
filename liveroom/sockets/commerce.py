"""Buying in-stream: ``buy`` (the hot path), ``release`` and ``checkout``."""

from __future__ import annotations

from functools import partial
from time import perf_counter
from typing import Any

import inventory
from orders import Actor, OrderService

from ..errors import error_body
from ..payload import ID_PATTERN, Payload
from ._base import Ack, Connection, SocketEdge
from ._engineio import Reply

__all__ = ["CommerceEvents"]

MAX_REQUEST_ID = 64
# Sale ids known to be well formed (a bound on what hostile ids can make it hold).
MAX_WELL_FORMED = 4096
BUY_MESSAGES = {
    "sold_out": "sold out: nothing left to reserve right now",
    "limit_reached": "you have reached the per-person limit of this sale",
    "not_started": "the sale has not started yet",
    "ended": "the sale has ended",
    "banned": "you are banned from this room",
    "verification_required": "to buy, sign in with your phone (POST /api/accounts/otp)",
    "rate_limited": "too many attempts; try again in a moment",
    "invalid": "send {sale, qty, request_id}: qty a whole number of at least 1, "
               "request_id a string of 1-64 characters",
}


def actor_of(conn: Connection) -> Actor:
    return Actor(conn.user.id, conn.user.role.value)


def _refused(status: str, sale: Any, remaining: int | None = None,
             message: str | None = None, code: str | None = None,
             retry_after_ms: int | None = None) -> Ack:
    error: dict[str, Any] = {"code": code or status, "message": message or BUY_MESSAGES[status]}
    if retry_after_ms:
        error["retry_after_ms"] = retry_after_ms
    # The sale id is echoed when it is one: whatever else a client sent is not sent back.
    return {"ok": False, "status": status, "sale": sale if type(sale) is str else None,
            "reservation": None, "remaining": remaining, "error": error}


class CommerceEvents:
    def __init__(self, edge: SocketEdge, stock: inventory.InventoryService,
                 orders: OrderService) -> None:
        self.edge = edge
        self.stock = stock
        self.orders = orders
        self._connections = edge.connections
        self._record_buy = edge.metrics.record_buy
        self._well_formed: set[str] = set()
        # ``buy`` shapes its own answers (every answer carries a buy status) and is answered
        # when its batch is decided.
        edge.deferred_event("buy", self.buy)
        edge.event("release")(self.release)
        edge.event("checkout")(self.checkout)

    def buy(self, sid: str, args: list[Any], reply: Reply) -> None:
        """The ``buy`` event: checked here, decided in a batch, answered through ``reply``.
        Every answer is counted by status and timed from event to ack. (Thousands of these a
        second under a sale: each check is written out once, in the cheapest form.)"""
        started = perf_counter()
        conn = self._connections.get(sid)
        if conn is None:
            self._answer(started, reply, {"ok": False, "error": {
                "code": "unauthorized", "message": "not connected"}})
            return
        # emit("buy", a, b, ack) from a hostile client still gets one answer.
        data = args[0] if len(args) == 1 else None
        if type(data) is not dict:
            self._answer(started, reply, _refused("invalid", None))
            return
        sale_id = data.get("sale")
        if not conn.user.phone_verified:
            # A guest session costs nothing to make: the per-person limit counts accounts.
            self._answer(started, reply, _refused("verification_required", sale_id))
            return
        buys = conn.buys
        if not buys.take(started):
            self._answer(started, reply, _refused(
                "rate_limited", sale_id, retry_after_ms=buys.retry_after_ms()))
            return
        qty = data.get("qty")
        request_id = data.get("request_id")
        if (type(sale_id) is not str
                or (sale_id not in self._well_formed and not self._well_formed_now(sale_id))
                or type(qty) is not int or qty < 1
                or type(request_id) is not str or not 1 <= len(request_id) <= MAX_REQUEST_ID):
            self._answer(started, reply, _refused("invalid", sale_id))
            return
        decided = partial(self._decided, started, reply, sale_id)
        try:
            known_now = self.stock.buy_nowait(sale_id, conn.user.id, qty, request_id, decided)
        except Exception as exc:
            decided(exc)
            return
        if known_now is not None:
            decided(known_now)

    def _well_formed_now(self, sale_id: str) -> bool:
        """Whether ``sale_id`` is an id; remembered, so each sale's id is matched once."""
        if not ID_PATTERN.match(sale_id):
            return False
        if len(self._well_formed) >= MAX_WELL_FORMED:
            self._well_formed.clear()
        self._well_formed.add(sale_id)
        return True

    def _decided(self, started: float, reply: Reply, sale_id: str,
                 outcome: inventory.BuyResult | Exception) -> None:
        if isinstance(outcome, Exception):
            body = error_body(outcome)
            ack = _refused("invalid", sale_id, message=body["message"], code=body["code"])
        else:
            hold = outcome.reservation
            if hold is not None and outcome.status == "reserved":
                ack = {"ok": True, "status": "reserved", "sale": sale_id,
                       "reservation": hold.to_public(), "remaining": outcome.remaining}
            else:
                ack = _refused(outcome.status, sale_id, outcome.remaining)
        self._answer(started, reply, ack)

    def _answer(self, started: float, reply: Reply, ack: Ack) -> None:
        self._record_buy(str(ack.get("status", "error")), perf_counter() - started)
        if reply is not None:
            reply(ack)

    async def release(self, conn: Connection, p: Payload) -> Ack:
        reservation = await self.stock.release(p.ident("reservation"), conn.user.id)
        return {"ok": True, "reservation": reservation.to_public()}

    async def checkout(self, conn: Connection, p: Payload) -> Ack:
        caller = actor_of(conn)
        order = await self.orders.checkout(caller, p.raw_object())
        return {"ok": True, "order": await self.orders.view(caller, order)}
