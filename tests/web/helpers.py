"""Set up anchors, rooms and products through the public REST API, as a person would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playwright.async_api import Page

from tests.server_harness import LiveServer


@dataclass
class Stage:
    anchor_token: str
    room: dict[str, Any]
    products: list[dict[str, Any]]


async def open_room(server: LiveServer, title: str = "Jade and phones, live",
                    products: tuple[tuple[str, str, int], ...] = (
                        ("Hetian jade bangle", "jewelry", 129_900),
                        ("iPhone 13 128 GB, second-hand", "phone_used", 249_900)),
                    anchor_name: str = "Lin the Anchor") -> Stage:
    token = server.token("anchor", anchor_name)
    status, room = await server.request("POST", "/api/rooms", token, json={"title": title})
    assert status == 201, room
    created = []
    for product_title, category, price in products:
        status, product = await server.request("POST", "/api/products", token, json={
            "title": product_title, "category": category, "price_cents": price, "brand": "Studio"})
        assert status == 201, product
        created.append(product)
    status, body = await server.request("POST", f"/api/rooms/{room['id']}/pin", token,
                                        json={"product_id": created[0]["id"]})
    assert status == 200, body
    return Stage(token, room, created)


async def no_horizontal_scroll(page: Page) -> bool:
    overflow: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
    return overflow
