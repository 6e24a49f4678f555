"""``serve --workers N``: several processes on one port share rooms, stock and pushes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from liveroom.clock import now_ms
from liveroom.identity import Role, TokenSigner, User, new_user_id
from loadtests import _procstats as procstats
from loadtests._launcher import ServerProcess
from tests.server_harness import PATIENCE_S, Client

SECRET = "workers-test-secret-0123456789abcdef"


@dataclass
class TimedClient(Client):
    """A client that notes when each event arrived, on the servers' clock (``now_ms``): a
    push's lag is measured from the moment it was due to its arrival, whatever the test was
    doing meanwhile."""

    arrivals: list[tuple[int, str, Any]] = field(default_factory=list)

    async def _record(self, event: str, data: Any = None) -> None:
        self.arrivals.append((now_ms(), event, data))
        await super()._record(event, data)

    def arrived(self, event: str) -> list[tuple[int, Any]]:
        return [(at, data) for at, name, data in self.arrivals if name == event]

    def clear(self) -> None:
        self.events.clear()
        self.arrivals.clear()

    async def wait_for_count(self, event: str, count: int, timeout: float) -> list[tuple[int, Any]]:
        """The first ``count`` arrivals of ``event``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.arrived(event)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.arrived(event))} of {count} {event!r} "
                                     f"events within {timeout}s: {self.events!r}")
            await asyncio.sleep(0.02)
        return self.arrived(event)[:count]


@dataclass
class Cluster:
    url: str
    server: ServerProcess
    signer: TokenSigner
    http: aiohttp.ClientSession
    clients: list[socketio.AsyncClient]

    def token(self, role: str, name: str = "T", user_id: str | None = None) -> str:
        """A viewer's token is a buyer account's (verified by phone): these viewers buy."""
        return self.signer.issue(User(user_id or new_user_id(), name, Role(role),
                                      phone_verified=role == "viewer"))

    async def request(self, method: str, path: str, token: str | None = None,
                      json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url + path, json=json,
                                     headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def connect(self, token: str) -> tuple[TimedClient, int]:
        sio = socketio.AsyncClient(reconnection=False)
        client = TimedClient(sio)
        sio.on("*", client._record)
        await sio.connect(self.url, auth={"token": token}, transports=["websocket"])
        self.clients.append(sio)
        worker = (await client.call("ping", {}))["worker"]
        return client, worker

    async def connect_on(self, worker: int, token_for: Any, attempts: int = 60) -> TimedClient:
        """A client that the kernel happened to hand to ``worker``."""
        for _ in range(attempts):
            client, got = await self.connect(token_for())
            if got == worker:
                return client
            await client.sio.disconnect()
            await asyncio.sleep(0.1)  # a restarted worker may still be starting
        raise AssertionError(f"no connection landed on worker {worker}")


def worker_pids(server: ServerProcess) -> list[int]:
    return [child.pid for child in server.children(recursive=False)
            if "spawn_main" in child.cmdline]


def named_children(parent: int, name: str) -> list[int]:
    found = [procstats.info(pid) for pid in procstats.children(parent)]
    return [each.pid for each in found if each is not None and each.name == name]


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited)."""
    return procstats.start_ticks(pid) is not None


@asynccontextmanager
async def running_cluster(workdir: Path, data_dir: Path | None = None,
                          redis_url: str | None = None, extra_args: tuple[str, ...] = ()
                          ) -> AsyncIterator[Cluster]:
    """``liveroom serve --workers 2`` on a free port; stopped with SIGTERM at the end (unless
    the test stopped it already with ``stop_cluster``)."""
    args = ["--workers", "2", *extra_args]
    if redis_url is not None:
        args += ["--redis-url", redis_url]
    # Every client of the cluster is 127.0.0.1: no per-address connection cap.
    server = ServerProcess(data_dir or workdir, args=args, env={
        "LIVEROOM_SECRET": SECRET, "LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "0"})
    await server.start()
    http = aiohttp.ClientSession()
    cluster = Cluster(server.url, server, TokenSigner(SECRET.encode(), 3600, now_ms), http, [])
    try:
        yield cluster
    finally:
        await stop_cluster(cluster)


async def stop_cluster(cluster: Cluster) -> None:
    """Disconnect the test's clients and stop the supervisor gracefully (exit code 0)."""
    for client in cluster.clients:
        if client.connected:
            await client.disconnect()
    await cluster.http.close()
    if cluster.server.returncode is None:
        started = time.monotonic()
        code = await cluster.server.stop(signal.SIGTERM, timeout_s=60)
        took = time.monotonic() - started
        assert code == 0
        assert took < 30, f"the supervisor took {took:.1f} s to stop"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as running:
        yield running


async def test_clients_on_different_workers_share_rooms_stock_and_pushes(
    cluster: Cluster,
) -> None:
    anchor = cluster.token("anchor", "Mei", "u_mei")
    _, room = await cluster.request("POST", "/api/rooms", anchor, {"title": "Two workers"})
    _, product = await cluster.request("POST", "/api/products", anchor, {
        "title": "Oil", "category": "essential_oil", "price_cents": 900, "brand": "P"})
    await cluster.request("POST", f"/api/rooms/{room['id']}/pin", anchor,
                          {"product_id": product["id"]})

    a = await cluster.connect_on(0, lambda: cluster.token("viewer", "A"))
    b = await cluster.connect_on(1, lambda: cluster.token("viewer", "B"))
    for client in (a, b):
        assert (await client.call("join", {"room": room["id"]}))["ok"]

    assert (await a.call("chat", {"room": room["id"], "text": "hello from worker 0"}))["ok"]
    message = await b.wait_for("chat")
    assert message["text"] == "hello from worker 0"
    await a.wait_for("viewers", lambda d: d["count"] == 2)

    status, sale = await cluster.request("POST", f"/api/rooms/{room['id']}/sales", anchor, {
        "product_id": product["id"], "stock": 20, "price_cents": 500, "per_user_limit": 1,
        "duration_s": 300})
    assert status == 201
    await b.wait_for("sale", lambda d: d["id"] == sale["id"])

    buyers = [await cluster.connect(cluster.token("viewer", f"buyer{i}")) for i in range(40)]
    assert {worker for _, worker in buyers} == {0, 1}
    acks = await asyncio.gather(*(c.call("buy", {"sale": sale["id"], "qty": 1,
                                                 "request_id": "one"}) for c, _ in buyers))
    assert sum(1 for ack in acks if ack["status"] == "reserved") == 20
    _, fresh = await cluster.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["remaining"], fresh["held"]) == (0, 20)
    for client in (a, b):
        await client.wait_for("stock", lambda d: d["remaining"] == 0)

    status, _ = await cluster.request("POST", "/api/certificates", cluster.token("admin"), {
        "kind": "refund_no_return", "anchor_id": "u_mei", "category": "essential_oil",
        "details": {"valid_from": now_ms(), "valid_until": now_ms() + 3_600_000}})
    assert status == 201
    for client in (a, b):
        await client.wait_for("badges", lambda d: any(
            badge["kind"] == "refund-no-return" for badge in d["badges"]))
    await asyncio.sleep(0.3)
    assert len(b.received("badges")) == 1, "each change is pushed once, not once per worker"
    assert len(b.received("chat")) == 1


async def test_a_killed_worker_is_replaced_and_the_sale_stays_whole(cluster: Cluster) -> None:
    anchor = cluster.token("anchor", "Mei", "u_mei")
    _, room = await cluster.request("POST", "/api/rooms", anchor, {"title": "Crash"})
    _, product = await cluster.request("POST", "/api/products", anchor, {
        "title": "Phone", "category": "phone_used", "price_cents": 9_900})
    _, sale = await cluster.request("POST", f"/api/rooms/{room['id']}/sales", anchor, {
        "product_id": product["id"], "stock": 10, "price_cents": 9_000, "per_user_limit": 1,
        "duration_s": 300, "hold_s": 20})
    first = await cluster.connect_on(0, lambda: cluster.token("viewer", "V"))
    second = await cluster.connect_on(1, lambda: cluster.token("viewer", "S"))
    reservations = {}
    for client, request_id in ((first, "a"), (second, "b")):
        ack = await client.call("buy", {"sale": sale["id"], "qty": 1, "request_id": request_id})
        assert ack["status"] == "reserved"
        reservations[id(client)] = ack["reservation"]["id"]

    pids = worker_pids(cluster.server)
    assert len(pids) == 2
    # Kill the worker that owns the orders hand-off consumer process: it must not outlive it.
    consumers: dict[int, list[int]] = {}
    for _ in range(600):  # the consumer names itself once it has started
        consumers = {pid: named_children(pid, "lr-handoff") for pid in pids}
        if any(consumers.values()):
            break
        await asyncio.sleep(0.1)
    victim = next(pid for pid, found in consumers.items() if found)
    pids.remove(victim)
    pids.insert(0, victim)
    os.kill(victim, signal.SIGKILL)
    for _ in range(600):  # bounds failure only
        if not any(running(pid) for pid in consumers[victim]):
            break
        await asyncio.sleep(0.1)
    assert not any(running(pid) for pid in consumers[victim]), \
        "the dead worker's hand-off consumer exits too"
    for _ in range(1200):  # bounds failure only
        if not (first.sio.connected and second.sio.connected):
            break
        await asyncio.sleep(0.05)
    dropped = [c for c in (first, second) if not c.sio.connected]
    alive = [c for c in (first, second) if c.sio.connected]
    assert len(dropped) == 1, "exactly the dead worker's clients are dropped"
    assert (await alive[0].call("ping", {}))["ok"], "the other worker is unaffected"
    dead_index = 0 if dropped[0] is first else 1
    # The survivor checks out at once (its 20 s hold must outlast a busy machine's restart).
    address = {"name": "S", "phone": "13800138000", "line1": "1 Road", "city": "Hefei"}
    done = await alive[0].call("checkout", {"reservation": reservations[id(alive[0])],
                                            "address": address, "payment": "cod"})
    assert "order" in done, f"the survivor's checkout was refused: {done}"
    assert done["order"]["status"] == "confirmed"

    # The supervisor restarts the dead worker; reconnecting clients can land on it again.
    replacement = await cluster.connect_on(dead_index, lambda: cluster.token("viewer", "R"))
    assert (await replacement.call("ping", {}))["worker"] == dead_index
    assert pids[0] not in worker_pids(cluster.server)

    # The dropped client's hold expires and its unit returns.
    for _ in range(400):
        _, fresh = await cluster.request("GET", f"/api/sales/{sale['id']}")
        if fresh["held"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (fresh["remaining"], fresh["held"], fresh["sold"]) == (9, 0, 1)


async def test_a_viewer_on_another_worker_watches_the_broadcast(cluster: Cluster) -> None:
    from tests.media.conftest import PATIENT_S, start_broadcaster, start_viewer, wait_until
    from tests.test_media_signaling import SocketSignal

    anchor_token = cluster.token("anchor", "Mei", "u_mei")
    _, room = await cluster.request("POST", "/api/rooms", anchor_token, {"title": "Video"})
    anchor = await cluster.connect_on(0, lambda: anchor_token)
    viewer_client = await cluster.connect_on(1, lambda: cluster.token("viewer", "Far"))
    for client in (anchor, viewer_client):
        assert (await client.call("join", {"room": room["id"]}))["ok"]

    broadcaster = await start_broadcaster(
        SocketSignal(anchor), room["id"])  # type: ignore[arg-type]
    viewer = await start_viewer(
        SocketSignal(viewer_client), room["id"], "far")  # type: ignore[arg-type]
    viewers = [viewer]
    try:
        await wait_until(lambda: viewer.video_count >= 10, PATIENT_S,
                         "a viewer on worker 1 decodes the broadcast relayed by worker 0")
        await viewer_client.wait_for("media", lambda d: d["live"] and d["viewers"] == 1)
        state = (await viewer_client.call("join", {"room": room["id"]}))["room"]
        assert state["media"]["live"] is True

        # Leaving the room closes the viewer's peer connection on the owner (worker 0).
        anchor.events.clear()
        assert (await viewer_client.call("leave", {"room": room["id"]})) == {"ok": True}
        await anchor.wait_for("media", lambda d: d["viewers"] == 0)

        assert (await viewer_client.call("join", {"room": room["id"]}))["ok"]
        again = await start_viewer(
            SocketSignal(viewer_client), room["id"], "far")  # type: ignore[arg-type]
        viewers.append(again)
        await wait_until(lambda: again.video_count >= 5, PATIENT_S, "the viewer watches again")
        await anchor.wait_for("media", lambda d: d["viewers"] == 1)
        anchor.events.clear()
        await viewer_client.sio.disconnect()
        await anchor.wait_for("media", lambda d: d["viewers"] == 0)
        stop = await anchor.call("rtc:stop", {"room": room["id"]})
        assert stop == {"ok": True, "stopped": True}
    finally:
        for each in viewers:
            await each.close()
        await broadcaster.pc.close()


async def edge_pid(cluster: Cluster, index: int, other_than: int | None = None) -> int:
    for _ in range(100):
        found = [pid for pid in named_children(cluster.server.pid, f"lr-hls-edge-{index}")
                 if pid != other_than and running(pid)]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no LL-HLS edge {index} runs")


async def test_serve_starts_hls_edges_that_serve_the_same_playlist_and_parts(
        tmp_path: Path) -> None:
    """``serve --hls-edges 2``: two supervised LL-HLS edges on their own port answer the live
    stream a worker packages, each the same playlist and part bytes as the servers; one that
    dies is started again."""
    from liveroom.hls_edge import EDGE_HEADER
    from liveroom.redis_server import free_port
    from tests.media.conftest import start_broadcaster
    from tests.test_media_signaling import SocketSignal

    port = free_port()
    async with running_cluster(tmp_path, extra_args=("--hls-edges", "2", "--hls-port",
                                                     str(port))) as cluster:
        edges = f"http://127.0.0.1:{port}"
        anchor_token = cluster.token("anchor", "Mei", "u_mei")
        _, room = await cluster.request("POST", "/api/rooms", anchor_token, {"title": "Crowd"})
        anchor, _ = await cluster.connect(anchor_token)
        assert (await anchor.call("join", {"room": room["id"]}))["ok"]
        broadcaster = await start_broadcaster(
            SocketSignal(anchor), room["id"], codec="video/H264")  # type: ignore[arg-type]
        # A connection per request: the kernel spreads them over the edges (and the workers).
        fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        try:
            playlist = ""
            for _ in range(150):
                try:
                    async with fresh.get(f"{edges}/hls/{room['id']}/index.m3u8") as response:
                        playlist = await response.text()
                except aiohttp.ClientConnectorError:
                    # The cluster is ready once its workers serve; its edges may still be
                    # starting (seen refused on a clean-clone run).
                    await asyncio.sleep(0.2)
                    continue
                if response.status == 200 and "#EXTINF" in playlist:
                    break
                await asyncio.sleep(0.2)
            assert "#EXTINF" in playlist
            hint = playlist.split('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="')[1].split('"')[0]
            _, _, msn, index = hint.removesuffix(".m4s").split("-")
            blocking = f"/hls/{room['id']}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}"

            async def from_edges(path: str, want: set[str]) -> dict[str, bytes]:
                answers: dict[str, bytes] = {}
                for _ in range(60):
                    async with fresh.get(edges + path) as response:
                        assert response.status == 200, path
                        answers[response.headers[EDGE_HEADER]] = await response.read()
                    if want <= set(answers):
                        return answers
                raise AssertionError(f"only edges {sorted(answers)} answered")

            lists = await from_edges(blocking, {"0", "1"})
            assert all(f'URI="{hint}"'.encode() in text for text in lists.values())
            parts = await from_edges(f"/hls/{room['id']}/{hint}", {"0", "1"})
            async with fresh.get(f"{cluster.url}/hls/{room['id']}/{hint}") as response:
                assert response.status == 200
                assert EDGE_HEADER not in response.headers  # a worker's answer
                served = await response.read()
            assert parts["0"] == parts["1"] == served
            assert served[4:8] == b"moof"

            killed = await edge_pid(cluster, 0)
            os.kill(killed, signal.SIGKILL)
            await edge_pid(cluster, 0, other_than=killed)
            again = b""
            for _ in range(150):  # until the new edge 0 listens and the kernel picks it
                with contextlib.suppress(aiohttp.ClientError):
                    async with fresh.get(f"{edges}/hls/{room['id']}/{hint}") as response:
                        if response.headers.get(EDGE_HEADER) == "0":
                            again = await response.read()
                            break
                await asyncio.sleep(0.1)
            assert again == served
        finally:
            await fresh.close()
            await broadcaster.pc.close()


def badge_kinds(push: dict[str, Any]) -> list[str]:
    return [badge["kind"] for badge in push["badges"]]


async def jewelry_room(cluster: Cluster) -> tuple[str, str]:
    anchor = cluster.token("anchor", "Mei", "u_mei")
    _, room = await cluster.request("POST", "/api/rooms", anchor, {"title": "Jade"})
    _, product = await cluster.request("POST", "/api/products", anchor, {
        "title": "Bangle", "category": "jewelry", "price_cents": 9_900})
    status, _ = await cluster.request("POST", f"/api/rooms/{room['id']}/pin", anchor,
                                      {"product_id": product["id"]})
    assert status == 200
    return room["id"], product["id"]


VAULT = {"material": "jade", "weight_mg": 40_000, "grade": "A", "appraiser": "Lin",
         "photo_sha256": ["ab" * 32]}


# A badge change pushed because it happened (the revocation's news, the watcher's plan for the
# expiry) is told apart from one found by the watchers' 30 s recheck by arriving well before
# that. How soon it arrives on a quiet machine is a number for docs/performance.md, not for a
# test that runs next to other suites: a loaded 2-core machine can add seconds to any push.
PUSHED_NOT_RECHECKED_MS = 10_000


async def test_revoke_and_expiry_reach_clients_on_every_worker_promptly(
    cluster: Cluster,
) -> None:
    room_id, product_id = await jewelry_room(cluster)
    # Whichever worker answers the HTTP calls below, one of these is on the other one.
    clients = [await cluster.connect_on(worker, lambda: cluster.token("viewer", "V"))
               for worker in (0, 1)]
    for client in clients:
        assert (await client.call("join", {"room": room_id}))["ok"]
    admin = cluster.token("admin", "Ada")

    _, cert = await cluster.request("POST", "/api/certificates", admin, {
        "kind": "vault", "product_id": product_id, "details": VAULT})
    for client in clients:
        await client.wait_for("badges", lambda d: "vault-certified" in badge_kinds(d))
        client.clear()
    status, revoked = await cluster.request(
        "POST", f"/api/certificates/{cert['id']}/revoke", admin, {"reason": "appraisal error"})
    assert status == 200
    # From the moment the revocation took effect (its signed record) to each push's arrival.
    revoked_at = revoked["revocation"]["revoked_at"]
    for client in clients:
        [(arrived_at, push)] = await client.wait_for_count("badges", 1, PATIENCE_S)
        assert "vault-certified" not in badge_kinds(push)
        lag_ms = arrived_at - revoked_at
        assert lag_ms < PUSHED_NOT_RECHECKED_MS, (
            f"the revocation reached a worker's client {lag_ms} ms late")
        client.clear()

    # Far enough out for the grant to be pushed first even on a busy machine; the lag is
    # measured from the planned expiry, not from when the test got round to looking.
    expires_at = now_ms() + 10_000
    status, expiring = await cluster.request("POST", "/api/certificates", admin, {
        "kind": "vault", "product_id": product_id, "details": VAULT,
        "expires_at": expires_at})
    assert status == 201
    for client in clients:
        (granted_at, grant), (arrived_at, push) = await client.wait_for_count(
            "badges", 2, (expires_at - now_ms()) / 1000 + PATIENCE_S)
        assert "vault-certified" in badge_kinds(grant)
        assert granted_at < expires_at, "the grant was pushed before the expiry"
        assert "vault-certified" not in badge_kinds(push)
        lag_ms = arrived_at - expires_at
        assert 0 <= lag_ms < PUSHED_NOT_RECHECKED_MS, (
            f"the expiry reached a worker's client {lag_ms} ms late")
    await asyncio.sleep(0.5)
    assert all(len(client.received("badges")) == 2 for client in clients), \
        "the expiry is pushed once, not once per worker"
    _, check = await cluster.request("GET", f"/api/certificates/{expiring['id']}")
    assert (check["valid"], check["reason"]) == (False, "expired")


async def test_an_expiry_is_pushed_after_the_issuing_server_has_stopped(
    tmp_path: Path, redis: Any, redis_url: str,
) -> None:
    """Two servers (two supervisors, two workers each) share Redis and the data dir; the one
    that issued a certificate stops before it expires, and the other pushes the expiry."""
    shared = tmp_path / "data"
    async with running_cluster(tmp_path, shared, redis_url) as staying, \
            running_cluster(tmp_path, shared, redis_url) as leaving:
        room_id, product_id = await jewelry_room(staying)
        viewer, _ = await staying.connect(staying.token("viewer", "V"))
        assert (await viewer.call("join", {"room": room_id}))["ok"]

        # Far enough out for the issuer to stop first (stop_cluster allows it 30 s, it takes a
        # few), short next to the watchers' 30 s rechecks.
        expires_at = now_ms() + 15_000
        status, _ = await leaving.request("POST", "/api/certificates", leaving.token("admin"), {
            "kind": "vault", "product_id": product_id, "details": VAULT,
            "expires_at": expires_at})
        assert status == 201
        await viewer.wait_for("badges", lambda d: "vault-certified" in badge_kinds(d))
        viewer.clear()

        await stop_cluster(leaving)
        assert now_ms() < expires_at - 500, "the issuer stopped too slowly for this test"
        [(arrived_at, push)] = await viewer.wait_for_count(
            "badges", 1, (expires_at - now_ms()) / 1000 + PATIENCE_S)
        assert "vault-certified" not in badge_kinds(push)
        lag_ms = arrived_at - expires_at
        assert 0 <= lag_ms < PUSHED_NOT_RECHECKED_MS, f"the expiry was pushed {lag_ms} ms late"
