"""The few REST calls the load generator makes (docs/protocol.md, "HTTP endpoints")."""

from __future__ import annotations

from typing import Any

import aiohttp

from .exceptions import ServerRefused

__all__ = ["ServerApi"]

# Buyers per test-buyers call (the server takes up to 10,000).
MINT_CHUNK = 5000


class ServerApi:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self.url = url.rstrip("/")

    async def call(self, what: str, method: str, path: str, token: str | None = None,
                   body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._session.request(method, self.url + path, json=body,
                                             headers=headers) as response:
                payload = await response.json(content_type=None)
                if response.status >= 300:
                    raise ServerRefused(what, response.status, payload)
                return payload
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ServerRefused(what, 0, f"{type(exc).__name__}: {exc}") from None

    async def mint_session(self, name: str) -> tuple[str, str]:
        """A guest viewer session: (token, user id)."""
        body = await self.call("POST /api/session", "POST", "/api/session", body={"name": name})
        return str(body["token"]), str(body["user"]["id"])

    async def mint_buyers(self, admin_token: str, count: int, prefix: str
                          ) -> list[tuple[str, str]]:
        """``count`` verified buyer accounts, (token, user id) each, minted by an admin on a
        server that echoes one-time codes (``LIVEROOM_OTP_ECHO=1``): buying needs an account,
        and one address cannot ask for thousands of SMS codes."""
        buyers: list[tuple[str, str]] = []
        while len(buyers) < count:
            chunk = min(MINT_CHUNK, count - len(buyers))
            body = await self.call("POST /api/accounts/test-buyers", "POST",
                                   "/api/accounts/test-buyers", admin_token,
                                   {"count": chunk, "prefix": f"{prefix}c{len(buyers)}"})
            buyers += [(str(b["token"]), str(b["user"]["id"])) for b in body["buyers"]]
        return buyers

    async def me(self, token: str) -> dict[str, Any]:
        body = await self.call("GET /api/me", "GET", "/api/me", token)
        user: dict[str, Any] = body["user"]
        return user

    async def create_room(self, token: str, title: str) -> dict[str, Any]:
        room: dict[str, Any] = await self.call("POST /api/rooms", "POST", "/api/rooms", token,
                                               {"title": title})
        return room

    async def create_product(self, token: str, title: str, price_cents: int) -> dict[str, Any]:
        product: dict[str, Any] = await self.call(
            "POST /api/products", "POST", "/api/products", token,
            {"title": title, "category": "loadtest", "price_cents": price_cents})
        return product

    async def create_sale(self, token: str, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        sale: dict[str, Any] = await self.call("POST /api/rooms/{id}/sales", "POST",
                                               f"/api/rooms/{room_id}/sales", token, body)
        return sale

    async def get_sale(self, sale_id: str) -> dict[str, Any]:
        sale: dict[str, Any] = await self.call("GET /api/sales/{id}", "GET",
                                               f"/api/sales/{sale_id}")
        return sale

    async def end_sale(self, token: str, sale_id: str) -> dict[str, Any]:
        sale: dict[str, Any] = await self.call("POST /api/sales/{id}/end", "POST",
                                               f"/api/sales/{sale_id}/end", token)
        return sale

    async def list_orders(self, token: str) -> list[dict[str, Any]]:
        """The caller's own orders as a buyer."""
        body = await self.call("GET /api/orders", "GET", "/api/orders", token)
        orders: list[dict[str, Any]] = body["orders"]
        return orders

    async def room_figures(self, token: str, room_id: str) -> dict[str, Any]:
        """The room's order figures, as its anchor sees them."""
        figures: dict[str, Any] = await self.call("GET /api/rooms/{id}/figures", "GET",
                                                  f"/api/rooms/{room_id}/figures", token)
        return figures

    async def create_drop(self, token: str, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        drop: dict[str, Any] = await self.call("POST /api/rooms/{id}/coupons", "POST",
                                               f"/api/rooms/{room_id}/coupons", token, body)
        return drop

    async def get_drop(self, drop_id: str) -> dict[str, Any]:
        drop: dict[str, Any] = await self.call("GET /api/coupon-drops/{id}", "GET",
                                               f"/api/coupon-drops/{drop_id}")
        return drop

    async def end_room(self, token: str, room_id: str) -> None:
        await self.call("POST /api/rooms/{id}/end", "POST", f"/api/rooms/{room_id}/end", token)
