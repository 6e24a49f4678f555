"""Sale objects as rooms see them: the badges of many sales in one certificate-store trip, and a
sale's status push that reaches the room even when its badges cannot be read."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from liveroom.catalog import BadgeSubject
from tests.server_harness import LiveServer
from tests.test_certificates_edge import VAULT_DETAILS, kinds


async def _product(server: LiveServer, anchor: str, category: str) -> dict[str, Any]:
    status, product = await server.request("POST", "/api/products", anchor, {
        "title": category, "category": category, "price_cents": 10_000, "brand": "B"})
    assert status == 201, product
    return dict(product)


async def _sale(server: LiveServer, anchor: str, room_id: str, product: dict[str, Any],
                **extra: Any) -> dict[str, Any]:
    status, sale = await server.request("POST", f"/api/rooms/{room_id}/sales", anchor, {
        "product_id": product["id"], "stock": 5, "price_cents": 9_000, "per_user_limit": 1,
        "duration_s": 600, **extra})
    assert status == 201, sale
    return dict(sale)


async def test_a_rooms_sales_read_all_their_badges_in_one_trip(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Two products"})
    jade = await _product(server, anchor, "jewelry")
    oil = await _product(server, anchor, "essential_oil")
    status, cert = await server.request("POST", "/api/certificates",
                                        server.token("inspector", "Iris"), {
        "kind": "vault", "product_id": jade["id"], "details": VAULT_DETAILS})
    assert status == 201, cert
    sales = [await _sale(server, anchor, room["id"], product) for product in (jade, oil, jade)]

    trips: list[list[BadgeSubject]] = []
    lookup = server.services.certificates.badges_for_many

    async def counted(subjects: Sequence[BadgeSubject]) -> dict[str, list[dict[str, Any]]]:
        trips.append(list(subjects))
        return await lookup(subjects)

    monkeypatch.setattr(server.services.catalog, "_badge_lookup", counted)
    status, listing = await server.request("GET", f"/api/rooms/{room['id']}/sales")
    assert status == 200, listing
    assert [s["id"] for s in listing["sales"]] == [s["id"] for s in reversed(sales)]
    assert len(trips) == 1, "one certificate-store trip for the whole listing"
    assert sorted(product for product, _, _ in trips[0]) == sorted([jade["id"], oil["id"]])

    by_product = {s["product"]: s["badges"] for s in listing["sales"]}
    vault = [b for b in by_product[jade["id"]] if b["kind"] == "vault-certified"]
    assert [b["certificate"] for b in vault] == [cert["id"]]
    assert "vault-certified" not in kinds(by_product[oil["id"]])
    _, fresh_oil = await server.request("GET", f"/api/products/{oil['id']}")
    assert by_product[oil["id"]] == fresh_oil["badges"]


async def test_a_sale_starting_is_pushed_even_when_its_badges_cannot_be_read(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Countdown"})
    viewer = await server.connect(server.token("viewer", "Ann"))
    assert (await viewer.call("join", {"room": room["id"]}))["ok"]
    product = await _product(server, anchor, "jewelry")
    # Long enough a countdown that the store breaks before the sale opens, on a busy machine too.
    sale = await _sale(server, anchor, room["id"], product, starts_in_s=5)
    assert sale["status"] == "scheduled"
    await viewer.wait_for("sale", lambda d: d["id"] == sale["id"])

    async def unreadable(_: Sequence[BadgeSubject]) -> dict[str, list[dict[str, Any]]]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(server.services.catalog, "_badge_lookup", unreadable)
    live = await viewer.wait_for(
        "sale", lambda d: d["id"] == sale["id"] and d["status"] == "live", 15)
    assert live["badges"] == []
    assert (live["remaining"], live["stock"]) == (5, 5)
