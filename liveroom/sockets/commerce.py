"""Buying in-stream: ``buy`` (the hot path), ``release`` and ``checkout``."""

from __future__ import annotations

import time
from typing import Any

import inventory
from orders import Actor, OrderService

from ..clock import now_ms
from ..errors import error_body
from ..payload import ID_PATTERN, Payload
from ._base import Ack, Connection, SocketEdge

__all__ = ["CommerceEvents"]

MAX_REQUEST_ID = 64
BUY_MESSAGES = {
    "sold_out": "sold out: nothing left to reserve right now",
    "limit_reached": "you have reached the per-person limit of this sale",
    "not_started": "the sale has not started yet",
    "ended": "the sale has ended",
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
    return {"ok": False, "status": status, "sale": sale, "reservation": None,
            "remaining": remaining, "error": error}


class CommerceEvents:
    def __init__(self, edge: SocketEdge, stock: inventory.InventoryService,
                 orders: OrderService) -> None:
        self.edge = edge
        self.stock = stock
        self.orders = orders
        # ``buy`` shapes its own answers (every answer carries a buy status), so it is
        # registered without the generic wrapper.
        edge.sio.on("buy", self._measured_buy)
        edge.event("release")(self.release)
        edge.event("checkout")(self.checkout)

    async def _measured_buy(self, sid: str, data: object = None, *extra: object) -> Ack:
        # Metrics: every answer counted by status, timed from event to ack.
        started = time.perf_counter()
        # emit("buy", a, b, ack) from a hostile client still gets one answer.
        ack = await self.buy(sid, data) if not extra else _refused("invalid", None)
        self.edge.metrics.record_buy(str(ack.get("status", "error")), time.perf_counter() - started)
        return ack

    async def buy(self, sid: str, data: object = None) -> Ack:
        conn = self.edge.connections.get(sid)
        if conn is None:
            return {"ok": False, "error": {"code": "unauthorized", "message": "not connected"}}
        if not isinstance(data, dict):
            return _refused("invalid", None)
        sale_id = data.get("sale")
        if not conn.buys.take(now_ms()):
            return _refused("rate_limited", sale_id, retry_after_ms=conn.buys.retry_after_ms())
        qty = data.get("qty")
        request_id = data.get("request_id")
        if (not isinstance(sale_id, str) or not ID_PATTERN.match(sale_id)
                or type(qty) is not int or qty < 1
                or not isinstance(request_id, str) or not 1 <= len(request_id) <= MAX_REQUEST_ID):
            return _refused("invalid", sale_id)
        try:
            result = await self.stock.buy(sale_id, conn.user.id, qty, request_id)
        except inventory.InventoryError as exc:
            body = error_body(exc)
            return _refused("invalid", sale_id, message=body["message"], code=body["code"])
        if result.status == "reserved" and result.reservation is not None:
            return {"ok": True, "status": "reserved", "sale": sale_id,
                    "reservation": result.reservation.to_public(),
                    "remaining": result.remaining}
        return _refused(result.status, sale_id, result.remaining)

    async def release(self, conn: Connection, p: Payload) -> Ack:
        reservation = await self.stock.release(p.ident("reservation"), conn.user.id)
        return {"ok": True, "reservation": reservation.to_public()}

    async def checkout(self, conn: Connection, p: Payload) -> Ack:
        order = await self.orders.checkout(actor_of(conn), p.raw_object())
        return {"ok": True, "order": order.to_public()}
