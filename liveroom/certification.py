"""Certificates seen from the rooms: which product categories each kind may certify, the live
``badges`` push to every room that shows an affected product, on every server process, and the
news of each grant to every process's expiry watcher."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from trustbadges import BadgeChange, Certificate, CertificateService, ExpiryWatcher

from .bus import ControlBus
from .catalog import Catalog, Product
from .exceptions import InvalidInput, UnknownAnchor
from .identity import User
from .payload import Payload

__all__ = ["KIND_CATEGORIES", "BadgeFanout", "CertificateDesk", "ExpiryPlans"]

log = logging.getLogger("liveroom.certification")
Emit = Callable[[str, Any, str], Awaitable[None]]
GRANTED_MESSAGE = "certificate_granted"

# Which product categories a certificate kind can vouch for (trust-commerce rules).
KIND_CATEGORIES: dict[str, frozenset[str]] = {
    "vault": frozenset({"jewelry"}),
    "inspection": frozenset({"phone_used"}),
    "refund_no_return": frozenset({"essential_oil"}),
}


class CertificateDesk:
    """Issuing through the edge: the subject must exist and fit the certificate's kind (a
    product of the right category; for refund-no-return, an anchor the catalog knows)."""

    def __init__(self, certificates: CertificateService, catalog: Catalog) -> None:
        self._certificates = certificates
        self._catalog = catalog

    async def issue(self, user: User, payload: Payload, body: dict[str, Any]) -> Certificate:
        kind = payload.raw("kind")
        if kind in ("vault", "inspection"):
            product = await self._catalog.get_product(payload.ident("product_id"))
            if product.category not in KIND_CATEGORIES[kind]:
                allowed = ", ".join(sorted(KIND_CATEGORIES[kind]))
                raise InvalidInput(f"a {kind} certificate is for {allowed} products, "
                                   f"not {product.category}")
        elif kind == "refund_no_return":
            category = payload.text("category", max_chars=40)
            if category not in KIND_CATEGORIES[kind]:
                allowed = ", ".join(sorted(KIND_CATEGORIES[kind]))
                raise InvalidInput(f"refund-no-return certification is offered for {allowed}")
            anchor_id = payload.ident("anchor_id")
            if not await self._catalog.anchor_known(anchor_id):
                raise UnknownAnchor(anchor_id)
        return await self._certificates.issue_request(user.id, user.role.value, body)

    async def badges(self, product: Product) -> list[dict[str, Any]]:
        return await self._certificates.badges_for(product.id, product.anchor_id,
                                                   product.category)


class BadgeFanout:
    """Certificate changes → ``badges {"product", "room", "badges"}`` in every room showing the
    product.

    The certificate service reports each change exactly once across processes (an expiry by the
    one process that claims it), and Socket.IO's client manager carries the emit to the sockets
    of every process, so the process that saw the change pushes it, once.
    """

    def __init__(self, catalog: Catalog, desk: CertificateDesk, emit: Emit) -> None:
        self._catalog = catalog
        self._desk = desk
        self._emit = emit

    async def on_change(self, change: BadgeChange) -> None:
        await self._push({"product": change.product_id, "anchor": change.anchor_id,
                          "category": change.category})

    async def _affected_products(self, message: dict[str, Any]) -> list[Product]:
        if message.get("product"):
            return [await self._catalog.get_product(str(message["product"]))]
        if message.get("anchor"):
            products = await self._catalog.products_of(str(message["anchor"]))
            return [p for p in products if p.category == message.get("category")]
        return []

    async def _push(self, message: dict[str, Any]) -> None:
        for product in await self._affected_products(message):
            badges = await self._desk.badges(product)
            for room_id in await self._catalog.rooms_showing(product.id):
                await self._emit("badges", {"product": product.id, "room": room_id,
                                            "badges": badges}, room_id)


class ExpiryPlans:
    """Every process plans every certificate's expiry and activation, whichever process issued
    it: a grant is announced on the control bus and wakes each process's watcher, which reads
    the new moment from the shared store. So an expiry is pushed on time even when the issuing
    process has stopped (the other watchers race for it; the store lets one report it)."""

    def __init__(self, bus: ControlBus, watcher: ExpiryWatcher) -> None:
        self._bus = bus
        self._watcher = watcher
        bus.on(GRANTED_MESSAGE, self._granted_elsewhere)

    async def on_change(self, change: BadgeChange) -> None:
        if change.reason == "granted":
            await self._bus.publish(GRANTED_MESSAGE, {"certificate": change.certificate_id})

    async def _granted_elsewhere(self, payload: dict[str, Any]) -> None:
        self._watcher.wake()
