"""Flash sales in a real browser: started in the studio, bought on a phone and checked out with
cash on delivery (the studio's live figures follow) or paid online through the sandbox provider
(approved, declined and paid again; an order recovered after a crash, a charge never answered);
the countdown follows the server's clock even when the phone's clock is wrong.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import (
    no_horizontal_scroll,
    open_room,
    sign_in_with_phone,
    start_sale,
)

TIMES = "\u00d7"  # the multiplication sign the page writes between quantity and title


class HeldAnswers:
    """The sandbox provider's answers wait until the test lets them through (``release``): the
    page is seen while a charge is pending however slow the machine, instead of racing a
    provider delay against Chromium. ``hold`` again before the next charge."""

    def __init__(self, server: LiveServer) -> None:
        self._open = asyncio.Event()
        sink = server.services.payments.sink
        assert sink is not None

        async def held(body: bytes, signature: str) -> object:
            await self._open.wait()
            return await sink(body, signature)

        server.services.payments.sink = held

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()


async def test_flash_sale_bought_and_checked_out_cash_on_delivery(server: LiveServer,
                                                                  pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    bangle = stage.products[0]
    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#no-sale")).to_be_visible()
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")

    await studio.select_option("#sale-product", bangle["id"])
    await studio.fill("#sale-stock", "3")
    await studio.fill("#sale-deal", "999.00")
    await studio.fill("#sale-limit", "1")
    # Long enough for the viewer's page to be seen before the start on a busy machine (at
    # 3 s, the sale could open before the page showed its countdown and disabled button).
    await studio.fill("#sale-starts", "10")
    await studio.fill("#sale-duration", "120")
    await studio.fill("#sale-hold", "60")
    await studio.click("#sale-form button[type=submit]")
    await expect(studio.locator("#sale-result")).to_contain_text("starts in 10 s")
    await expect(studio.locator("#sale-remaining")).to_have_text("3")

    # The viewer sees the countdown (server clock) and the deal price before the start.
    await expect(viewer.locator("#sale-countdown")).to_contain_text("Starts in 0:0")
    await expect(viewer.locator("#buy")).to_be_disabled()
    await expect(viewer.locator("#product-price")).to_have_text("¥999.00")
    await expect(viewer.locator("#product-was")).to_have_text("¥1,299.00")
    await pages.shot(viewer, "sale-countdown-phone")

    await expect(viewer.locator("#buy")).to_be_enabled(timeout=30_000)
    await expect(viewer.locator("#sale-countdown")).to_contain_text("Ends in")
    # A guest presses Buy now: the page asks for a phone first (a buyer account), then buys.
    await sign_in_with_phone(viewer, "+86 138 0013 8000")
    await expect(viewer.locator("#signin-open")).to_be_hidden()
    await expect(viewer.locator("#buy-result")).to_contain_text(
        f"Reserved 1 {TIMES} Hetian jade bangle")
    await expect(viewer.locator("#stock-text")).to_contain_text("2 of 3 left")
    await expect(studio.locator("#sale-held")).to_have_text("1")

    checkout = viewer.locator("#checkout")
    await expect(checkout).to_be_visible()
    await expect(viewer.locator("#checkout-summary")).to_contain_text("¥999.00")
    await viewer.fill("#ship-name", "Wang Fang")
    await viewer.fill("#ship-phone", "13800138000")
    await viewer.fill("#ship-city", "Linyi")
    await viewer.fill("#ship-line1", "12 Jade Street")
    assert await viewer.locator("input[name=payment][value=cod]").is_checked()
    assert await no_horizontal_scroll(viewer)
    await pages.shot(viewer, "checkout-phone")
    await viewer.click("#place-order")
    await expect(viewer.locator("#buy-result")).to_contain_text(
        "Order placed: pay ¥999.00 in cash when it arrives")
    await expect(checkout).to_be_hidden()
    order = viewer.locator("#orders li.order").first
    await expect(order).to_contain_text(f"1 {TIMES} Hetian jade bangle")
    await expect(order).to_contain_text("cash on delivery")
    await expect(studio.locator("#sale-sold")).to_have_text("1")

    # The studio's live figures count the order: one buyer among the two people in the room
    # (the viewer and the anchor's own studio).
    await expect(studio.locator("#fig-gmv")).to_have_text("¥999.00")
    await expect(studio.locator("#fig-orders")).to_have_text("1")
    await expect(studio.locator("#fig-aov")).to_have_text("¥999.00")
    await expect(studio.locator("#fig-conversion")).to_have_text("50.0%")

    # The per-person limit answers at once.
    await viewer.click("#buy")
    await expect(viewer.locator("#buy-result")).to_contain_text("Limit reached")
    await pages.shot(viewer, "order-placed-phone")
    await pages.shot(studio, "studio-sale-desktop")
    pages.assert_clean()


async def reserve_and_fill_checkout(viewer: Page, phone: str | None = None) -> None:
    """Buy one unit (signing in with ``phone`` first, for a guest) and fill the checkout."""
    if phone is None:
        await viewer.click("#buy")
    else:
        await sign_in_with_phone(viewer, phone)
    await expect(viewer.locator("#buy-result")).to_contain_text(
        f"Reserved 1 {TIMES} Hetian jade bangle")
    await expect(viewer.locator("#checkout")).to_be_visible()
    await viewer.fill("#ship-name", "Wang Fang")
    await viewer.fill("#ship-phone", "13800138000")
    await viewer.fill("#ship-city", "Linyi")
    await viewer.fill("#ship-line1", "12 Jade Street")
    await viewer.check("input[name=payment][value=online]")


async def test_online_payment_waits_for_the_provider_approved_and_declined(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    await start_sale(server, stage, stage.products[0], price_cents=99_900, per_user_limit=3)
    # A provider that takes its time: the page must not call the order paid before it answers.
    answers = HeldAnswers(server)
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#buy")).to_be_enabled()

    # Approved card: "awaiting payment" first, the approval when the provider calls back.
    await reserve_and_fill_checkout(viewer, "+8613900139001")
    await viewer.fill("#card", "4242 4242 4242 4242")
    await viewer.click("#place-order")
    result = viewer.locator("#buy-result")
    await expect(result).to_contain_text("awaiting payment: ¥999.00")
    paid = viewer.locator("#orders li.order").first
    await expect(paid).to_contain_text("Awaiting payment · online payment")
    await expect(paid).to_contain_text("Payment in progress")
    await expect(paid.locator("button")).to_have_count(0)  # nothing to do while it runs
    answers.release()
    await expect(result).to_contain_text("Payment approved: ¥999.00 paid", timeout=30_000)
    await expect(viewer.locator('#orders li.order[data-status="paid"]')).to_contain_text(
        "Paid · paid online")
    await pages.shot(viewer, "online-approved-phone")

    # Declined card: the reason, and the order kept to be paid again.
    answers.hold()
    await reserve_and_fill_checkout(viewer)
    await viewer.fill("#card", "4000000000000002")
    await viewer.click("#place-order")
    await expect(result).to_contain_text("awaiting payment")
    answers.release()
    await expect(result).to_contain_text(
        "Payment declined: your card was declined by its bank", timeout=30_000)
    await expect(result).to_contain_text("cash on delivery")
    unpaid = viewer.locator('#orders li.order[data-status="created"]')
    await expect(unpaid.locator(".payment")).to_contain_text(
        "Payment declined: your card was declined by its bank")
    await pages.shot(viewer, "online-declined-phone")

    # Paid again with another card that is refused for another reason...
    await unpaid.get_by_role("button", name="Pay with a card").click()
    await unpaid.get_by_label("Card number").fill("4000 0000 0000 9995")
    answers.hold()
    await unpaid.get_by_role("button", name="Pay", exact=True).click()
    await expect(unpaid.locator(".payment")).to_contain_text("Payment in progress")
    await expect(unpaid.get_by_role("button")).to_have_count(0)
    answers.release()
    await expect(unpaid.locator(".payment")).to_contain_text(
        "Payment declined: the card does not have enough funds", timeout=30_000)
    await expect(result).to_contain_text("the card does not have enough funds")
    # ...then switched to cash on delivery: confirmed at once.
    await unpaid.get_by_role("button", name="Pay cash on delivery instead").click()
    confirmed = viewer.locator('#orders li.order[data-status="confirmed"]')
    await expect(confirmed).to_contain_text("Confirmed: pay cash on delivery · cash on delivery")
    await expect(confirmed.locator(".result")).to_contain_text(
        "Switched to cash on delivery: pay ¥999.00 when it arrives")
    await expect(viewer.locator('#orders li.order[data-status="created"]')).to_have_count(0)

    token = await viewer.evaluate("localStorage.getItem('liveroom.token.viewer')")
    status, body = await server.request("GET", "/api/orders", token)
    assert status == 200
    assert sorted(o["status"] for o in body["orders"]) == ["confirmed", "paid"]
    assert await no_horizontal_scroll(viewer)
    await pages.shot(viewer, "online-paid-again-phone")
    pages.assert_clean()


class CrashAfterCommit:
    """The real inventory, but the checkout process "dies" right after Redis sold the unit:
    the order is left as an intent for the recovery (``reconcile``) to turn into the order."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def commit(self, reservation_id: str, user_id: str) -> Any:
        await self.real.commit(reservation_id, user_id)
        raise RuntimeError("the process died after the sale")


async def test_an_order_recovered_after_a_crash_is_paid_from_my_orders(
        server: LiveServer, pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    """An online checkout interrupted after the sale is recovered without a payment (the card
    is never stored). Placing the order again returns it: the page must not wait for a charge
    that nobody started, but offer to pay."""
    stage = await open_room(server)
    await start_sale(server, stage, stage.products[0], price_cents=99_900)
    service = server.services.orders
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#buy")).to_be_enabled()
    await reserve_and_fill_checkout(viewer, "+8613900139002")
    await viewer.check("input[name=payment][value=online]")
    await viewer.fill("#card", "4242 4242 4242 4242")

    monkeypatch.setattr(service, "ledger", CrashAfterCommit(service.ledger))
    await viewer.click("#place-order")
    await expect(viewer.locator("#checkout-result")).not_to_have_text("Placing your order…")
    monkeypatch.undo()
    recovered = await service.reconcile(min_age_ms=0)
    [order] = recovered.placed
    assert (order.status, order.payment_method) == ("created", "online")

    await viewer.click("#place-order")  # the same reservation again: the recovered order
    unpaid = viewer.locator(f'#orders li.order[data-order="{order.id}"]')
    await expect(unpaid).to_contain_text("Awaiting payment · online payment")
    await expect(viewer.locator("#buy-result")).to_contain_text("not paid yet")
    await expect(unpaid.locator(".payment")).to_have_text("Not paid yet. Pay below.")
    await unpaid.get_by_role("button", name="Pay with a card").click()
    await unpaid.get_by_label("Card number").fill("4242 4242 4242 4242")
    await unpaid.get_by_role("button", name="Pay", exact=True).click()
    await expect(viewer.locator("#buy-result")).to_contain_text(
        "Payment approved: ¥999.00 paid", timeout=30_000)
    await expect(viewer.locator(f'#orders li.order[data-order="{order.id}"]')).to_contain_text(
        "Paid · paid online")
    await pages.shot(viewer, "recovered-order-paid-phone")
    pages.assert_clean()


async def test_a_charge_the_provider_never_answers_is_given_up_and_said_so(
        server: LiveServer, pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's answer is lost: after the charge timeout the order's charge is given up,
    and the page (re-reading the order) says why and offers to pay again."""
    stage = await open_room(server)
    await start_sale(server, stage, stage.products[0], price_cents=99_900)
    service = server.services.orders

    async def lost(body: bytes, signature: str) -> None:
        return None

    monkeypatch.setattr(server.services.payments, "sink", lost)
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#buy")).to_be_enabled()
    await reserve_and_fill_checkout(viewer, "+8613900139003")
    await viewer.check("input[name=payment][value=online]")
    await viewer.fill("#card", "4242 4242 4242 4242")
    await viewer.click("#place-order")
    unpaid = viewer.locator('#orders li.order[data-status="created"]')
    await expect(unpaid.locator(".payment")).to_contain_text("Payment in progress")

    later = service.now_ms() + service.charge_timeout_ms
    monkeypatch.setattr(service, "now_ms", lambda: later)
    [given_up] = await service.expire_unpaid()
    assert given_up.status == "created"
    # No push here (the upkeep owner sends it): the page's own re-read finds the answer.
    await expect(viewer.locator("#buy-result")).to_contain_text(
        "Payment declined: the payment service did not answer in time", timeout=30_000)
    await expect(unpaid.locator(".payment")).to_have_text(
        "Payment declined: the payment service did not answer in time. Pay again below.")
    await expect(unpaid.get_by_role("button", name="Pay with a card")).to_be_visible()
    pages.assert_clean()


async def test_paying_after_the_payment_deadline_says_the_order_is_being_cancelled(
        server: LiveServer, pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card was declined and the buyer tries again only after the payment timeout: the
    server refuses, and the page says the time to pay is over and what happens now."""
    stage = await open_room(server)
    await start_sale(server, stage, stage.products[0], price_cents=99_900)
    service = server.services.orders
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#buy")).to_be_enabled()
    await reserve_and_fill_checkout(viewer, "+8613900139004")
    await viewer.fill("#card", "4000000000000002")
    await viewer.click("#place-order")
    created = viewer.locator('#orders li.order[data-status="created"]')
    await expect(created.locator(".payment")).to_contain_text(
        "Payment declined: your card was declined by its bank", timeout=30_000)
    order_id = await created.get_attribute("data-order")
    assert order_id is not None
    # By id: the upkeep may cancel the order (status "cancelled") once the deadline has passed.
    order = viewer.locator(f'#orders li.order[data-order="{order_id}"]')
    await order.get_by_role("button", name="Pay with a card").click()
    await order.get_by_label("Card number").fill("4242 4242 4242 4242")

    later = service.now_ms() + service.payment_timeout_ms
    monkeypatch.setattr(service, "now_ms", lambda: later)
    pages.allow_refusal(409)
    await order.get_by_role("button", name="Pay", exact=True).click()
    refusal = ("The time to pay for this order is over: it is being cancelled and the item goes "
               "back on sale.")
    await expect(order.locator(".result")).to_have_text(refusal)
    payments = [(p.status, p.reason) for p in await service.store.payments(order_id)]
    assert payments == [("declined", "card_declined")], "nothing charged after the deadline"

    upkeep = server.services.order_upkeep
    assert upkeep is not None
    await upkeep.run_once()  # as its next pass would: cancelled, and the buyer told
    await expect(order).to_have_attribute("data-status", "cancelled")
    await expect(order).to_contain_text("Cancelled · online payment")
    await pages.shot(viewer, "pay-after-deadline-phone")
    pages.assert_clean()


def skewed_clock(skew_ms: int) -> str:
    """An init script that sets the page's clock ``skew_ms`` off (``Date`` only, as a phone's
    wrong clock would; timers still run at the real pace)."""
    return f"""(() => {{
        const RealDate = Date;
        const skew = {skew_ms};
        class SkewedDate extends RealDate {{
            constructor(...args) {{
                if (args.length === 0) super(RealDate.now() + skew); else super(...args);
            }}
            static now() {{ return RealDate.now() + skew; }}
        }}
        globalThis.Date = SkewedDate;
    }})();"""


def countdown_seconds(text: str) -> int:
    """ "Starts in 0:07" -> 7, "Ends in 1:59" -> 119."""
    match = re.search(r"(\d+):(\d\d)$", text.strip())
    assert match, text
    return int(match[1]) * 60 + int(match[2])


async def test_countdown_follows_the_server_clock_on_a_wrong_phone_clock(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    ahead = await pages.open(f"{server.url}/r/{room_id}", PHONE,
                             init_script=skewed_clock(3_600_000))  # an hour fast
    behind = await pages.open(f"{server.url}/r/{room_id}", PHONE,
                              init_script=skewed_clock(-600_000))  # ten minutes slow
    assert abs(await ahead.evaluate("Date.now()") - time.time() * 1000 - 3_600_000) < 60_000
    await expect(ahead.locator("#product-title")).to_have_text("Hetian jade bangle")
    await expect(behind.locator("#product-title")).to_have_text("Hetian jade bangle")

    sale = await start_sale(server, stage, stage.products[0], starts_in_s=8, duration_s=120)
    created = time.monotonic()  # at or after the sale's server_time
    starts_in_s = (sale["starts_at"] - sale["server_time"]) / 1000
    for page in (ahead, behind):
        countdown = page.locator("#sale-countdown")
        await expect(countdown).to_contain_text("Starts in 0:0")
        shown = countdown_seconds(await countdown.inner_text())
        waited_s = time.monotonic() - created
        # The server's own count, less the time this test has taken since (on a busy machine,
        # seconds); shown in whole seconds rounded up, from a clock synced to within half a
        # round trip of /api/time (2 s allowed either way). A phone's own wrong clock would be
        # off by minutes here.
        assert starts_in_s - waited_s - 2 <= shown <= starts_in_s + 2, (shown, waited_s)
        await expect(page.locator("#buy")).to_be_disabled()
    await pages.shot(ahead, "countdown-clock-ahead-phone")

    # The sale opens on the server's clock on both phones, and runs its full two minutes.
    for page in (ahead, behind):
        await expect(page.locator("#buy")).to_be_enabled(timeout=30_000)
        countdown = page.locator("#sale-countdown")
        await expect(countdown).to_contain_text("Ends in")
        shown = countdown_seconds(await countdown.inner_text())
        open_s = time.monotonic() - created - starts_in_s  # at most this long since it opened
        assert 120 - open_s - 2 <= shown <= 121, (shown, open_s)
    pressed = time.monotonic()  # before the hold was taken
    await sign_in_with_phone(behind, "+8613900139005")
    await expect(behind.locator("#buy-result")).to_contain_text(
        f"Reserved 1 {TIMES} Hetian jade bangle")
    # The hold's countdown (checkout) also runs on the server's clock: 120 s by default.
    held = countdown_seconds(await behind.locator("#hold-countdown").inner_text())
    held_s = time.monotonic() - pressed
    assert 120 - held_s - 2 <= held <= 121, (held, held_s)
    await pages.shot(behind, "countdown-clock-behind-phone")
    pages.assert_clean()
