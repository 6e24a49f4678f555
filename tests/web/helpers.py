"""Set up anchors, rooms and products through the public REST API, as a person would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from playwright.async_api import BrowserContext, Page, Route, expect

from tests.server_harness import Client, LiveServer

# For ``page.wait_for_function``: the verify page's QR image has loaded. Predicates are given as
# functions: Playwright eval()s an expression string in the page, which the CSP refuses.
QR_LOADED = ("() => document.querySelector('#qr').complete"
             " && document.querySelector('#qr').naturalWidth > 0")


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


ADDRESS = {"name": "Wang Fang", "phone": "13800138000", "city": "Linyi",
           "line1": "12 Jade Street"}


async def start_sale(server: LiveServer, stage: Stage, product: dict[str, Any],
                     **fields: int) -> dict[str, Any]:
    """A flash sale on ``product`` through the anchor's REST call (live now unless told)."""
    body = {"product_id": product["id"], "stock": 5, "price_cents": product["price_cents"],
            "per_user_limit": 1, "starts_in_s": 0, "duration_s": 600, "hold_s": 120, **fields}
    status, sale = await server.request("POST", f"/api/rooms/{stage.room['id']}/sales",
                                        stage.anchor_token, json=body)
    assert status == 201, sale
    created: dict[str, Any] = sale
    return created


async def place_order(server: LiveServer, buyer: Client, buyer_token: str,
                      sale: dict[str, Any], request_id: str) -> dict[str, Any]:
    """``buyer`` reserves one unit (Socket.IO ``buy``) and checks out cash on delivery (REST)."""
    answer = await buyer.call("buy", {"sale": sale["id"], "qty": 1, "request_id": request_id})
    assert answer["ok"], answer
    status, body = await server.request("POST", "/api/orders", buyer_token, json={
        "reservation": answer["reservation"]["id"], "address": ADDRESS, "payment": "cod"})
    assert status == 201, body
    order: dict[str, Any] = body["order"]
    return order


async def advance(server: LiveServer, token: str, order_id: str, *steps: str) -> None:
    """Move an order along its lifecycle by REST (``ship``, ``deliver``, ``complete``...)."""
    for step in steps:
        status, body = await server.request("POST", f"/api/orders/{order_id}/{step}", token)
        assert status == 200, (step, body)


async def sign_in_with_phone(page: Page, phone: str, via: str = "#buy") -> None:
    """Click ``via`` as a guest (Buy now, or the sale's sign-in button) and sign in with a
    one-time code, as a person does: the phone, the code (a test server echoes it and the page
    fills it in), and the dialog closes. Clicked on Buy now, the buy then goes ahead."""
    await page.click(via)
    dialog = page.locator("#signin-dialog")
    await expect(dialog).to_be_visible()
    await page.fill("#signin-phone", phone)
    await page.click("#signin-send")
    await expect(page.locator("#signin-code")).not_to_have_value("")
    await page.click("#signin-verify")
    await expect(dialog).to_be_hidden()


async def accept_link_sign_in(page: Page, name: str) -> None:
    """A viewer page opened with ``#token=`` asks before signing in as that account: say yes."""
    dialog = page.locator("#switch-dialog")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#switch-name")).to_have_text(name)
    await page.click("#switch-accept")
    await expect(dialog).to_be_hidden()


# ---------------------------------------------------------------- the orders' ``actions``

OrdersEdit = Callable[[list[dict[str, Any]]], None]
RECEIVED = ("delivered", "completed", "return_requested", "returned", "refunded")


def buyer_order_actions(server: LiveServer, edit: OrdersEdit | None = None,
                        ) -> Callable[[BrowserContext], Awaitable[None]]:
    """A ``Pages.open`` setup for a test that makes up part of the server's answer: ``edit``
    changes the orders (with the ``actions`` the server sent) that the page's
    ``GET /api/orders`` receives. Without ``edit`` the server's answer passes untouched."""

    async def answer(route: Route) -> None:
        response = await route.fetch()
        if response.status != 200 or edit is None:
            await route.fulfill(response=response)
            return
        body = await response.json()
        assert all("actions" in order for order in body["orders"]), body
        edit(body["orders"])
        await route.fulfill(response=response, json=body)

    async def setup(context: BrowserContext) -> None:
        await context.route("**/api/orders", answer)

    return setup
