"""The real server on ``--database-url``: checkout, figures, certificates and the order rules
through Socket.IO and HTTP, with orders and certificates in PostgreSQL (no SQLite file made)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.server_harness import LiveServer, live_server
from tests.test_commerce_edge import ADDRESS, VAULT, buyer, shop


@pytest.fixture
async def pg_server(redis: aioredis.Redis, redis_url: str, data_dir: Path, tmp_path: Path,
                    pg_url: str) -> AsyncIterator[LiveServer]:
    """A node as deployed beside others: its signing key from a shared file."""
    key = tmp_path / "signing.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    async with live_server(redis_url, data_dir, database_url=pg_url,
                           signing_key_file=key) as live:
        yield live


async def test_a_server_on_postgresql_keeps_orders_and_certificates_there(
    pg_server: LiveServer, data_dir: Path, pg_url: str
) -> None:
    server = pg_server
    anchor, room_id, product, sale = await shop(server)
    anchor_sock = await server.connect(anchor)
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "pg1"})
    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS, "payment": "cod"})
    assert done["ok"] is True, done
    order_id = done["order"]["id"]
    figures = await anchor_sock.wait_for("figures", lambda d: d["orders"] == 1)
    assert figures["gmv_cents"] == 99_900

    status, body = await server.request("POST", f"/api/orders/{order_id}/ship", anchor)
    assert (status, body["error"]["code"]) == (409, "certification_required")
    status, issued = await server.request("POST", "/api/certificates", server.token("inspector"),
                                          {"kind": "vault", "product_id": product["id"],
                                           "details": VAULT})
    assert status == 201, issued
    status, body = await server.request("POST", f"/api/orders/{order_id}/ship", anchor)
    assert (status, body["order"]["status"]) == (200, "shipped")

    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == (
            "shipped")
        assert await conn.fetchval("SELECT COUNT(*) FROM certificates") == 1
    finally:
        await conn.close()
    status, keys = await server.request("GET", "/api/certificates/keys")
    assert keys["active_key_id"] == issued["key_id"]
    assert not (data_dir / "platform_ed25519.pem").exists()
    assert not (data_dir / "orders.sqlite3").exists()
    assert not (data_dir / "certificates.sqlite3").exists()
