"""Two nodes: two ``liveroom serve`` processes with data dirs of their own, sharing one Redis and
one PostgreSQL (the session's throwaway cluster), the token secret and the signing key file, as
docs/deploy.md describes. Clients on both nodes see one room, one sale, one order history and one
set of certificates; a node killed with SIGKILL mid-sale loses no order and doubles none, and
the hand-off entries its consumer had read but not acknowledged are recorded by the other node's
consumer, once each.

Nothing here measures time: every wait is for a condition, with a generous deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from liveroom.clock import now_ms
from liveroom.identity import Role, TokenSigner, User, new_user_id
from loadtests._launcher import ServerProcess
from orders.keys import HANDOFF_GROUP, handoff_stream
from tests.server_harness import Client

pytestmark = pytest.mark.integration

SECRET = "two-nodes-test-secret-0123456789abcdef"
# Short, so that the surviving node takes a dead node's unacknowledged hand-off entries over
# within the test; far longer than a live consumer holds a batch here.
CLAIM_IDLE_MS = 2_000
DEADLINE_S = 60.0


def address_of(number: int) -> dict[str, str]:
    """A buyer's own door and phone (a sale's per-person limit also counts by door and phone)."""
    return {"name": f"Buyer {number}", "phone": f"1390013{number:04d}",
            "line1": f"{number} Tea Lane", "city": "Hefei"}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.1)


@dataclass
class Node:
    name: str
    server: ServerProcess
    http: aiohttp.ClientSession
    clients: list[socketio.AsyncClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    async def request(self, method: str, path: str, token: str | None = None,
                      json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url + path, json=json,
                                     headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def connect(self, token: str) -> Client:
        sio = socketio.AsyncClient(reconnection=False)
        client = Client(sio)
        sio.on("*", client._record)
        await sio.connect(self.url, auth={"token": token}, transports=["websocket"])
        self.clients.append(sio)
        return client

    def kill(self) -> None:
        """The machine is gone: SIGKILL to the server and every process below it (its
        hand-off consumer), with no chance to acknowledge, close or say goodbye."""
        os.killpg(self.server.pid, signal.SIGKILL)


@dataclass
class TwoNodes:
    a: Node
    b: Node
    signer: TokenSigner
    pg_url: str
    redis: aioredis.Redis

    def token(self, role: str, name: str, user_id: str | None = None) -> str:
        """A viewer's token is a buyer account's (verified by phone)."""
        return self.signer.issue(User(user_id or new_user_id(), name, Role(role),
                                      phone_verified=role == "viewer"))

    async def room(self, node: Node, category: str = "essential_oil") -> tuple[str, str]:
        """A room of the anchor Mei with a pinned product, made through ``node``."""
        anchor = self.token("anchor", "Mei", "u_mei")
        status, room = await node.request("POST", "/api/rooms", anchor, {"title": "Two nodes"})
        assert status == 201, room
        status, product = await node.request("POST", "/api/products", anchor, {
            "title": "Oil", "category": category, "price_cents": 900, "brand": "P"})
        assert status == 201, product
        status, _ = await node.request("POST", f"/api/rooms/{room['id']}/pin", anchor,
                                       {"product_id": product["id"]})
        assert status == 200
        return room["id"], product["id"]

    async def sale(self, node: Node, room_id: str, product_id: str, stock: int
                   ) -> dict[str, Any]:
        """A live one-per-person sale of ``stock`` units whose holds outlast the test."""
        status, sale = await node.request(
            "POST", f"/api/rooms/{room_id}/sales", self.token("anchor", "Mei", "u_mei"), {
                "product_id": product_id, "stock": stock, "price_cents": 500,
                "per_user_limit": 1, "duration_s": 3_000, "hold_s": 600})
        assert status == 201, sale
        created: dict[str, Any] = sale
        return created

    async def db(self) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(self.pg_url)
        return connection


def node_server(tmp_path: Path, name: str, redis_url: str, pg_url: str, key: Path
                ) -> ServerProcess:
    return ServerProcess(tmp_path / name, args=["--redis-url", redis_url,
                                                "--database-url", pg_url], env={
        "LIVEROOM_SECRET": SECRET,
        "LIVEROOM_SIGNING_KEY_FILE": str(key),
        "LIVEROOM_NODE_NAME": name,
        "LIVEROOM_HANDOFF_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
        # Every client of the test is 127.0.0.1: no per-address connection cap.
        "LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "0",
    })


@pytest.fixture
async def nodes(tmp_path: Path, redis: aioredis.Redis, redis_url: str, pg_url: str
                ) -> AsyncIterator[TwoNodes]:
    key = tmp_path / "signing.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    servers = [node_server(tmp_path, name, redis_url, pg_url, key)
               for name in ("node-a", "node-b")]
    http = aiohttp.ClientSession()
    try:
        # Together: both migrate the fresh database at once (one of them waits).
        await asyncio.gather(*(server.start() for server in servers))
        a, b = (Node(name, server, http) for name, server
                in zip(("node-a", "node-b"), servers, strict=True))
        yield TwoNodes(a, b, TokenSigner(SECRET.encode(), 3600, now_ms), pg_url, redis)
        for node in (a, b):
            for client in node.clients:
                if client.connected:
                    await client.disconnect()
    finally:
        await http.close()
        for server in servers:
            if server.returncode is None:
                assert await server.stop(signal.SIGTERM, timeout_s=60) == 0, server.log_tail()
            else:
                await server.stop()


async def test_clients_on_two_nodes_share_rooms_sales_orders_and_certificates(
    nodes: TwoNodes,
) -> None:
    a_node, b_node = nodes.a, nodes.b
    room_id, product_id = await nodes.room(a_node)
    a = await a_node.connect(nodes.token("viewer", "A"))
    b = await b_node.connect(nodes.token("viewer", "B"))
    for client in (a, b):
        assert (await client.call("join", {"room": room_id}))["ok"]

    # Chat and viewer counts cross nodes, both ways.
    assert (await a.call("chat", {"room": room_id, "text": "hello from node A"}))["ok"]
    assert (await b.wait_for("chat", timeout=10))["text"] == "hello from node A"
    assert (await b.call("chat", {"room": room_id, "text": "hello from node B"}))["ok"]
    await a.wait_for("chat", lambda d: d["text"] == "hello from node B", 10)
    for client in (a, b):
        await client.wait_for("viewers", lambda d: d["count"] == 2, 10)

    # A sale made through node B is announced on node A.
    sale = await nodes.sale(b_node, room_id, product_id, 20)
    await a.wait_for("sale", lambda d: d["id"] == sale["id"], 10)

    # Ann buys on node A and checks out there; she lists her order through node B.
    ann_token = nodes.token("viewer", "Ann")
    ann = await a_node.connect(ann_token)
    bought = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "ann"})
    assert bought["status"] == "reserved", bought
    done = await ann.call("checkout", {"reservation": bought["reservation"]["id"],
                                       "address": address_of(9_999), "payment": "cod"})
    assert done["ok"] is True, done
    status, listed = await b_node.request("GET", "/api/orders", ann_token)
    assert status == 200
    assert [order["id"] for order in listed["orders"]] == [done["order"]["id"]]
    status, detail = await b_node.request("GET", f"/api/orders/{done['order']['id']}",
                                          ann_token)
    assert (status, detail["order"]["status"]) == (200, "confirmed")

    # The other 19 units, bought by 40 buyers spread over both nodes at once: exactly 19.
    crowd = [await (a_node if i % 2 else b_node).connect(nodes.token("viewer", f"buyer{i}"))
             for i in range(40)]
    acks = await asyncio.gather(*(client.call("buy", {
        "sale": sale["id"], "qty": 1, "request_id": "one"}) for client in crowd))
    reserved = [ack for ack in acks if ack["status"] == "reserved"]
    assert len(reserved) == 19
    assert {ack["status"] for ack in acks} == {"reserved", "sold_out"}
    for node in (a_node, b_node):
        _, fresh = await node.request("GET", f"/api/sales/{sale['id']}")
        assert (fresh["remaining"], fresh["held"], fresh["sold"]) == (0, 19, 1)
    for client in (a, b):
        await client.wait_for("stock", lambda d: d["sale"] == sale["id"]
                              and d["remaining"] == 0, 10)

    # A certificate issued on node A verifies on node B and pushes badges on both, once each.
    a.events.clear()
    b.events.clear()
    status, cert = await a_node.request("POST", "/api/certificates", nodes.token("admin", "Ada"), {
        "kind": "refund_no_return", "anchor_id": "u_mei", "category": "essential_oil",
        "details": {"valid_from": now_ms(), "valid_until": now_ms() + 3_600_000}})
    assert status == 201, cert
    status, check = await b_node.request("GET", f"/api/certificates/{cert['id']}")
    assert status == 200
    assert (check["valid"], check["reason"]) == (True, None)
    for client in (a, b):
        await client.wait_for("badges", lambda d: any(
            badge["kind"] == "refund-no-return" for badge in d["badges"]), 10)
    # Still one push each once a later chat has gone round both nodes.
    assert (await a.call("chat", {"room": room_id, "text": "after the badge"}))["ok"]
    for client in (a, b):
        await client.wait_for("chat", lambda d: d["text"] == "after the badge", 10)
        assert len(client.received("badges")) == 1, "each change is pushed once, by one node"


async def test_a_node_killed_mid_sale_loses_and_doubles_no_order(nodes: TwoNodes) -> None:
    """Node A dies (SIGKILL to its whole process group) while its buyers' buys and checkouts
    are in flight; node B keeps serving; A's buyers reconnect to B, retry with the same
    ``request_id`` and check out. Every reservation acknowledged ``reserved`` ends as exactly one
    order (the holds are long: none expires), held is 0 and remaining + sold is the stock."""
    a_node, b_node = nodes.a, nodes.b
    stock = 40
    room_id, product_id = await nodes.room(b_node)
    sale = await nodes.sale(b_node, room_id, product_id, stock)
    sale_id = sale["id"]
    watcher = await b_node.connect(nodes.token("viewer", "Watcher"))
    assert (await watcher.call("join", {"room": room_id}))["ok"]

    tokens = {i: nodes.token("viewer", f"buyer{i}") for i in range(50)}
    on_a = list(range(30))  # 0-9 buy, then check out as node A dies; 10-29 buy as it dies
    on_b = list(range(30, 50))
    clients = {i: await (a_node if i in on_a else b_node).connect(tokens[i]) for i in tokens}
    # Every answer any node gave: buyer -> reservation id (a buyer never gets two).
    reservations: dict[int, str] = {}
    answered_by_a: list[str] = []
    a_answered = asyncio.Event()

    def heard(i: int, ack: Any) -> None:
        if isinstance(ack, dict) and ack.get("status") == "reserved":
            rid = ack["reservation"]["id"]
            assert reservations.setdefault(i, rid) == rid, "a retry answered another hold"

    async def buy(i: int) -> Any:
        """The answer, or None if the node died first."""
        try:
            ack = await clients[i].call("buy", {"sale": sale_id, "qty": 1,
                                                "request_id": f"r{i}"}, timeout=15)
        except Exception:  # the connection's end, whatever the client raises
            return None
        heard(i, ack)
        return ack

    async def checkout(i: int) -> Any:
        return await clients[i].call("checkout", {
            "reservation": reservations[i], "address": address_of(i), "payment": "cod"},
            timeout=15)

    async def on_a_in_flight(work: Awaitable[Any], what: str) -> None:
        with contextlib.suppress(Exception):
            if await work is not None:
                answered_by_a.append(what)
                a_answered.set()

    await asyncio.gather(*(buy(i) for i in on_a[:10]))
    assert sorted(reservations) == on_a[:10]

    # Mid-sale: A's first buyers check out and its other buyers buy while B's buyers buy;
    # node A dies the moment it has answered any of them (the rest are at every stage: not
    # read, decided in Redis or PostgreSQL and not answered, answered).
    in_flight = [asyncio.create_task(on_a_in_flight(checkout(i), "checkout"))
                 for i in on_a[:10]]
    in_flight += [asyncio.create_task(on_a_in_flight(buy(i), "buy")) for i in on_a[10:]]
    in_flight += [asyncio.create_task(buy(i)) for i in on_b]
    await asyncio.wait_for(a_answered.wait(), DEADLINE_S)
    a_node.kill()
    assert await a_node.server.stop() == -signal.SIGKILL
    await asyncio.gather(*in_flight)

    # Node B keeps serving.
    assert (await watcher.call("ping", {}))["ok"]
    assert (await watcher.call("chat", {"room": room_id, "text": "still here"}))["ok"]
    await watcher.wait_for("chat", lambda d: d["text"] == "still here", 10)
    status, _ = await b_node.request("GET", f"/api/sales/{sale_id}")
    assert status == 200

    # A's buyers come back through node B: the same request id gives each the answer it may
    # have missed (its hold, or none), and each holder checks out (again: the same order).
    for i in on_a:
        with contextlib.suppress(Exception):
            await clients[i].sio.disconnect()
        clients[i] = await b_node.connect(tokens[i])
        assert (await clients[i].call("join", {"room": room_id}))["ok"]
        await buy(i)
    assert set(on_a[:10]) <= set(reservations)
    orders: dict[int, str] = {}
    for i in sorted(reservations):
        done = await checkout(i)
        assert done["ok"] is True, (i, done)
        orders[i] = done["order"]["id"]
        assert done["order"]["reservation"] == reservations[i]
    assert len(set(orders.values())) == len(orders)

    # The audit: stock, orders and holds agree, on either node's view and in the database.
    sold = len(reservations)
    assert sold == stock, "50 buyers for 40 units: every unit is sold"
    _, fresh = await b_node.request("GET", f"/api/sales/{sale_id}")
    assert (fresh["remaining"], fresh["held"], fresh["sold"]) == (stock - sold, 0, sold)
    db = await nodes.db()
    try:
        rows = await db.fetch("SELECT reservation_id, buyer_id, id FROM orders "
                              "WHERE sale_id = $1", sale_id)
    finally:
        await db.close()
    assert sorted(row["reservation_id"] for row in rows) == sorted(reservations.values())
    assert {row["id"] for row in rows} == set(orders.values())
    for i, order_id in orders.items():
        status, listed = await b_node.request("GET", "/api/orders", tokens[i])
        assert status == 200
        assert [order["id"] for order in listed["orders"]] == [order_id]

    # The hand-off: every entry of the sale's stream is recorded once (node A's consumer's
    # unacknowledged ones taken over by node B's), every reservation ends committed.
    await handoff_complete(nodes, sale_id)
    db = await nodes.db()
    try:
        recorded = await db.fetch("SELECT id, state FROM reservations WHERE sale_id = $1",
                                  sale_id)
    finally:
        await db.close()
    assert sorted((row["id"], row["state"]) for row in recorded) == sorted(
        (rid, "committed") for rid in reservations.values())


async def handoff_complete(nodes: TwoNodes, sale_id: str) -> None:
    """Wait until nothing of the sale's hand-off stream is pending and every entry of it is in
    the database; then check each is there exactly once."""
    stream = handoff_stream(sale_id)

    async def entry_ids() -> list[str]:
        entries: Any = await nodes.redis.xrange(stream)
        return [text(entry_id) for entry_id, _ in entries]

    async def recorded() -> list[str]:
        db = await nodes.db()
        try:
            return [row["entry_id"] for row in await db.fetch(
                "SELECT entry_id FROM handoff_entries WHERE sale_id = $1", sale_id)]
        finally:
            await db.close()

    async def done() -> bool:
        pending = await nodes.redis.xpending(stream, HANDOFF_GROUP)
        return int(pending["pending"]) == 0 and sorted(await recorded()) == sorted(
            await entry_ids())

    try:
        await eventually(done, "every hand-off entry recorded and acknowledged")
    except AssertionError as late:
        # What was left, and what the surviving consumer said about it.
        stream_ids, stored = set(await entry_ids()), set(await recorded())
        pending = await nodes.redis.xpending(stream, HANDOFF_GROUP)
        consumers = await nodes.redis.xinfo_consumers(stream, HANDOFF_GROUP)
        logs = "\n".join(f"{node.name}:\n{node.server.log_tail(40)}"
                         for node in (nodes.a, nodes.b))
        raise AssertionError(f"{late}: not recorded {sorted(stream_ids - stored)}, recorded "
                             f"but not in the stream {sorted(stored - stream_ids)}, pending "
                             f"{pending}, consumers {consumers}\n{logs}") from None
    entries = await recorded()
    assert len(entries) == len(set(entries))


async def test_a_dead_nodes_unacknowledged_handoff_entries_are_recorded_by_the_other(
    nodes: TwoNodes,
) -> None:
    """Each node reads the hand-off stream as one consumer of its own name. While the database
    holds every hand-off write back (a table lock: a stalled database), both consumers have
    read entries they cannot acknowledge; node A dies. Once the database moves again, node B's
    consumer records its own entries and claims A's: each entry once."""
    a_node, b_node = nodes.a, nodes.b
    room_id, product_id = await nodes.room(b_node)
    sale = await nodes.sale(a_node, room_id, product_id, 40)
    stream = handoff_stream(sale["id"])

    async def pending_of(consumer: str) -> list[str]:
        entries: Any = await nodes.redis.xpending_range(stream, HANDOFF_GROUP, "-", "+", 1000,
                                                        consumername=consumer)
        return [text(entry["message_id"]) for entry in entries]

    lock = await nodes.db()
    try:
        stalled = lock.transaction()
        await stalled.start()
        await lock.execute("LOCK TABLE handoff_entries IN EXCLUSIVE MODE")
        bought = 0

        async def both_stuck() -> bool:
            nonlocal bought
            if await pending_of("node-a") and await pending_of("node-b"):
                return True
            buyer = await (a_node if bought % 2 else b_node).connect(
                nodes.token("viewer", f"buyer{bought}"))
            ack = await buyer.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "x"})
            assert ack["status"] == "reserved", ack
            bought += 1
            await asyncio.sleep(0.5)  # the consumers poll four times a second
            return False

        await eventually(both_stuck, "both nodes' consumers read an entry")
        a_read = await pending_of("node-a")
        a_node.kill()
        assert await a_node.server.stop() == -signal.SIGKILL
        await stalled.rollback()
    finally:
        await lock.close()

    await handoff_complete(nodes, sale["id"])
    assert await pending_of("node-a") == []
    consumers = await nodes.redis.xinfo_consumers(stream, HANDOFF_GROUP)
    assert sorted(text(c["name"]) for c in consumers) == ["node-a", "node-b"], \
        "one consumer per node, named after the node"
    db = await nodes.db()
    try:
        taken_over = await db.fetch(
            "SELECT entry_id, reservation_id FROM handoff_entries WHERE entry_id = ANY($1)",
            a_read)
        reserved = await db.fetchval("SELECT COUNT(*) FROM reservations WHERE sale_id = $1",
                                     sale["id"])
    finally:
        await db.close()
    assert sorted(row["entry_id"] for row in taken_over) == sorted(a_read)
    assert reserved == bought
    # Node B took them over: it is the only one left, and it still answers.
    _, fresh = await b_node.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["held"], fresh["remaining"]) == (bought, 40 - bought)
