"""A PostgreSQL that goes away mid-run: every store call answers ``store_unavailable`` (503 over
HTTP, the same code in an ack) and changes nothing; when the server is back the stores recover
by themselves, with what was committed before intact. A cluster of its own, stopped and started
again on the same port (``pg_ctl stop -m immediate``: a crash, not a clean shutdown)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from database.throwaway import ThrowawayPostgres
from liveroom.errors import error_body, error_status
from orders import StoreUnavailable
from tests.clock import Clock
from tests.orders.conftest import BUYER, make_world
from tests.orders.helpers import order_in
from tests.server_harness import live_server
from tests.test_commerce_edge import ADDRESS, shop, signed_in_buyer
from trustbadges import CertificateService
from trustbadges import StoreUnavailable as CertificatesUnavailable

from .trustbadges.conftest import INSPECTOR, PRODUCT_ID, vault_details

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    pg.start()
    yield pg
    pg.destroy()


async def test_a_database_that_goes_away_is_store_unavailable_and_comes_back(
    cluster: ThrowawayPostgres, data_dir: Path
) -> None:
    url = cluster.url()
    world = await make_world(url)
    certificates = CertificateService.open(data_dir, now_ms=Clock(), database_url=url)
    await certificates.start()
    try:
        order = await order_in(world, "confirmed")
        cert = await certificates.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID,
                                        details=vault_details())

        cluster.stop()
        with pytest.raises(StoreUnavailable) as lost:
            await world.service.get_order(BUYER, order.id)
        assert (error_status(lost.value), error_body(lost.value)["code"]) == (
            503, "store_unavailable")
        with pytest.raises(StoreUnavailable):
            await world.service.cancel(BUYER, order.id)
        with pytest.raises(StoreUnavailable):
            await world.checkout(BUYER, world.ledger.hold(BUYER.user_id))
        with pytest.raises(CertificatesUnavailable) as lost_cert:
            await certificates.get(cert.id)
        assert (error_status(lost_cert.value), error_body(lost_cert.value)["code"]) == (
            503, "store_unavailable")

        cluster.start()
        # No restart of the stores: the pools reconnect on their own.
        again = await world.service.get_order(BUYER, order.id)
        assert again.status == "confirmed"  # the cancel during the outage changed nothing
        assert (await certificates.get(cert.id)).valid
        cancelled = await world.service.cancel(BUYER, order.id)
        assert cancelled.status == "cancelled"
        assert [o.id for o in await world.service.list_orders(BUYER)] == [order.id]
    finally:
        await certificates.close()
        await world.payments.close()
        await world.store.close()


async def test_the_server_answers_503_and_acks_store_unavailable_then_recovers(
    cluster: ThrowawayPostgres, redis: aioredis.Redis, redis_url: str, data_dir: Path
) -> None:
    """Through the real server: while the database is gone a checkout's ack and an HTTP call
    say ``store_unavailable`` and the hold stays the buyer's; once it is back the same
    checkout places the order, with no restart."""
    key = data_dir / "signing.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    async with live_server(redis_url, data_dir, database_url=cluster.url(),
                           signing_key_file=key) as server:
        _, room_id, _, sale = await shop(server)
        token, ann = await signed_in_buyer(server, room_id, "Ann")
        ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "out1"})
        checkout = {"reservation": ack["reservation"]["id"], "address": ADDRESS,
                    "payment": "cod"}

        cluster.stop()
        try:
            refused = await ann.call("checkout", checkout)
            assert refused["ok"] is False
            assert refused["error"]["code"] == "store_unavailable"
            status, body = await server.request("GET", "/api/orders", token)
            assert (status, body["error"]["code"]) == (503, "store_unavailable")
        finally:
            cluster.start()

        done = await ann.call("checkout", checkout)
        assert done["ok"] is True, done
        assert done["order"]["status"] == "confirmed"
        status, body = await server.request("GET", "/api/orders", token)
        assert status == 200
        assert [o["id"] for o in body["orders"]] == [done["order"]["id"]]
        _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
        assert (fresh["held"], fresh["sold"]) == (0, 1)
