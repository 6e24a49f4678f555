"""The two commands as a user runs them: ``liveroom serve`` and ``liveroom token``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from liveroom.clock import now_ms
from liveroom.identity import Role, TokenSigner, User
from liveroom.redis_server import free_port
from loadtests import _procstats as procstats
from loadtests._launcher import ServerProcess

LIVEROOM = [sys.executable, "-m", "liveroom"]
# Every client of these servers is 127.0.0.1: no per-address connection cap.
NO_CONNECTION_CAP = {"LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "0"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEROOM_")}
    env.update(NO_CONNECTION_CAP)
    env.update(extra)
    return env


def _server(data_dir: Path, *args: str, **settings: str) -> ServerProcess:
    """``liveroom serve ARGS`` on a free port with ``settings`` (``LIVEROOM_*``) and no
    per-address connection cap unless ``settings`` set one."""
    return ServerProcess(data_dir, args=args, env={**NO_CONNECTION_CAP, **settings})


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *LIVEROOM, *args, env=env or _env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_token_command_signs_with_the_data_dir_secret(tmp_path: Path) -> None:
    code, out, _ = await _run("token", "--role", "inspector", "--name", "Iris",
                              "--data-dir", str(tmp_path))
    assert code == 0
    token = out.strip().splitlines()[-1]
    signer = TokenSigner((tmp_path / "secret").read_bytes().strip(), 60, now_ms)
    user = signer.verify(token)
    assert (user.name, user.role) == ("Iris", Role.INSPECTOR)


async def test_token_command_uses_liveroom_secret(tmp_path: Path) -> None:
    env = _env(LIVEROOM_SECRET="an-operator-chosen-secret-0123456789")
    code, out, _ = await _run("token", "--role", "admin", "--name", "Ops",
                              "--data-dir", str(tmp_path), env=env)
    assert code == 0
    signer = TokenSigner(b"an-operator-chosen-secret-0123456789", 60, now_ms)
    assert signer.verify(out.strip().splitlines()[-1]).role is Role.ADMIN
    assert not (tmp_path / "secret").exists()


async def test_token_command_refuses_bad_input(tmp_path: Path) -> None:
    code, _, err = await _run("token", "--role", "viewer", "--name", "  ",
                              "--data-dir", str(tmp_path))
    assert code == 2
    assert "name must not be empty" in err
    code, _, _ = await _run("token", "--role", "king", "--name", "x")
    assert code == 2


async def test_serve_without_redis_server_says_how_to_fix_it(tmp_path: Path) -> None:
    env = _env(LIVEROOM_REDIS_SERVER_BIN="redis-server-missing-here")
    code, _out, err = await _run("serve", "--data-dir", str(tmp_path), "--port",
                                str(free_port()), env=env)
    assert code == 2
    assert "redis-server-missing-here" in err

    env = _env(PATH="/nonexistent")
    code, _, err = await _run("serve", "--data-dir", str(tmp_path), "--port",
                              str(free_port()), env=env)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "apt-get install redis-server" in lines[0]
    assert "--redis-url" in lines[0]


def _redis_children(server: ServerProcess) -> list[int]:
    return [child.pid for child in server.children(recursive=False)
            if "redis-server" in child.cmdline]


def _handoff_children(server: ServerProcess) -> list[int]:
    return [child.pid for child in server.children(recursive=False)
            if child.name == "lr-handoff"]


def _running(pids: list[int]) -> dict[int, int | None]:
    """pid -> start time, which tells a reused pid apart (None: already exited)."""
    return {pid: procstats.start_ticks(pid) for pid in pids}


async def _still_running(processes: dict[int, int | None], within_s: float = 30) -> list[int]:
    """Which of ``processes`` (from ``_running``) still run after ``within_s`` seconds: a
    process that is stopping may take a moment to go; an orphan never does."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        running = [pid for pid, started in processes.items()
                   if started is not None and procstats.start_ticks(pid) == started]
        if not running or asyncio.get_running_loop().time() > deadline:
            return running
        await asyncio.sleep(0.05)


def _printed(text: str, label: str) -> str:
    match = re.search(rf"^  {label}:\s+(\S+)", text, re.MULTILINE)
    assert match, f"{label!r} is not in the demo output:\n{text}"
    return match.group(1)


async def _check_demo_output(text: str, port: int, data_dir: Path, room_id: str) -> None:
    """The URLs and tokens ``serve --demo`` prints lead a newcomer to the demo room."""
    base = f"http://127.0.0.1:{port}"
    signer = TokenSigner((data_dir / "secret").read_bytes().strip(), 60, now_ms)
    tokens = {role: _printed(text, f"{role} token") for role in ("anchor", "inspector", "admin")}
    users = {role: signer.verify(token) for role, token in tokens.items()}
    assert {role: user.role.value for role, user in users.items()} == {
        "anchor": "anchor", "inspector": "inspector", "admin": "admin"}
    assert _printed(text, "viewer room") == f"{base}/r/{room_id}"
    assert _printed(text, "anchor studio") == f"{base}/studio/{room_id}#token={tokens['anchor']}"
    assert _printed(text, "inspector desk") == f"{base}/inspect#token={tokens['inspector']}"
    async with aiohttp.ClientSession() as http:
        for url in (f"{base}/r/{room_id}", f"{base}/studio/{room_id}", f"{base}/inspect"):
            async with http.get(url) as response:
                assert response.status == 200, url
                assert response.content_type == "text/html"
        async with http.get(f"{base}/api/rooms/{room_id}") as response:
            room = await response.json()
        assert room["anchor"]["id"] == users["anchor"].id
        # A lucky bag a newcomer can enter with the printed passphrase.
        assert room["lucky"]["status"] == "open"
        assert room["lucky"]["condition"] == {"kind": "passphrase"}
        assert room["lucky"]["id"] in _printed(text, "lucky bag")
        # A coupon drop a newcomer can grab and use on the flash sale.
        assert room["coupon"]["status"] == "live"
        assert room["coupon"]["id"] == _printed(text, "coupon drop").rstrip(":")
        assert room["coupon"]["min_spend_cents"] <= room["sale"]["price_cents"]
        async with http.get(f"{base}/api/products", headers={
                "Authorization": f"Bearer {tokens['anchor']}"}) as response:
            assert response.status == 200
            products = (await response.json())["products"]
    assert sorted((p["category"], p["title"]) for p in products) == [
        ("essential_oil", "Lavender essential oil 30 ml"),
        ("jewelry", "Hetian jade bangle"),
        ("phone_used", "iPhone 13 128 GB, second-hand"),
    ]
    assert all(p["anchor_id"] == users["anchor"].id for p in products)
    assert all(isinstance(p["price_cents"], int) and p["price_cents"] > 0 for p in products)


async def test_serve_demo_starts_embedded_redis_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    server = _server(tmp_path, "--demo", LIVEROOM_GC_FULL_INTERVAL_S="0.5")
    await server.start()
    port = server.port
    text = server.output()
    assert "/r/r_" in text
    assert "anchor token:" in text
    redis_pids = _running(_redis_children(server))
    assert len(redis_pids) == 1

    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/api/rooms") as response,
    ):
        rooms = (await response.json())["rooms"]
    assert [room["title"] for room in rooms] == ["Demo live sale: jade, phones, oils"]
    assert rooms[0]["pinned"]["category"] == "jewelry"
    assert "vault-certified" in [badge["kind"] for badge in rooms[0]["pinned"]["badges"]]
    assert rooms[0]["sale"]["status"] == "scheduled", "a newcomer sees a flash-sale countdown"
    assert rooms[0]["sale"]["product"] == rooms[0]["pinned"]["id"]
    await _check_demo_output(text, port, tmp_path, rooms[0]["id"])
    # The server runs its own full garbage collections (liveroom/collector.py) and times them.
    async with aiohttp.ClientSession() as http:
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
            # Every series is labelled with the node, the host name by default.
            count = f'liveroom_gc_full_pause_seconds_count{{node="{socket.gethostname()}"}}'
            if (f"{count} 0" not in metrics
                    or asyncio.get_running_loop().time() > deadline):
                break
            await asyncio.sleep(0.1)
    assert count in metrics
    assert f"{count} 0" not in metrics

    assert await server.stop(signal.SIGTERM) == 0
    assert await _still_running(redis_pids) == [], "embedded redis-server was orphaned"
    assert any((tmp_path / "redis").rglob("*.aof"))


async def test_demo_data_survives_a_restart(tmp_path: Path) -> None:
    async def start_and_list() -> list[str]:
        server = _server(tmp_path, "--demo")
        await server.start()
        port, text = server.port, server.output()
        redis_pids = _running(_redis_children(server))
        assert len(redis_pids) == 1
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/rooms") as response,
        ):
            ids = [room["id"] for room in (await response.json())["rooms"]]
        await _check_demo_output(text, port, tmp_path, ids[0])
        assert await server.stop(signal.SIGINT) == 0
        assert await _still_running(redis_pids) == [], "SIGINT orphaned redis-server"
        return ids

    first = await start_and_list()
    assert await start_and_list() == first


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_serve_uses_the_given_redis_and_starts_none_of_its_own(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, how: str,
) -> None:
    settings = {"LIVEROOM_SECRET": "cli-redis-url-secret-0123456789abcdef"}
    args = []
    if how == "flag":
        args += ["--redis-url", redis_url]
    else:
        settings["LIVEROOM_REDIS_URL"] = redis_url
    server = _server(tmp_path, *args, **settings)
    await server.start()
    port = server.port
    assert _redis_children(server) == [], "no embedded redis-server with a Redis URL"
    assert not (tmp_path / "redis").exists()

    signer = TokenSigner(b"cli-redis-url-secret-0123456789abcdef", 600, now_ms)
    anchor = signer.issue(User("u_anchor", "Mei", Role.ANCHOR))
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/readyz") as response:
            assert response.status == 200
        async with http.post(url + "/api/rooms", json={"title": "On the shared Redis"},
                             headers={"Authorization": f"Bearer {anchor}"}) as response:
            assert response.status == 201
            room = await response.json()
        async with http.get(url + "/api/rooms") as response:
            assert [r["id"] for r in (await response.json())["rooms"]] == [room["id"]]
    # The room is in the Redis the URL names (the test's own redis-server), not elsewhere.
    assert await redis.zscore("rooms:live", room["id"]) is not None

    assert await server.stop(signal.SIGTERM) == 0
    assert await redis.ping(), "stopping the server leaves a Redis it did not start running"


async def test_serve_records_every_reservation_through_its_consumer_process(
    tmp_path: Path,
) -> None:
    import sqlite3

    import socketio

    server = _server(tmp_path, LIVEROOM_SECRET="cli-consumer-secret-0123456789abcdef")
    await server.start()
    port = server.port
    consumers: list[int] = []
    for _ in range(600):  # the child names itself once it runs (seconds on a busy machine)
        consumers = _handoff_children(server)
        if consumers:
            break
        await asyncio.sleep(0.1)
    assert len(consumers) == 1, "the hand-off consumer runs in a child process"
    running = _running(consumers)

    signer = TokenSigner(b"cli-consumer-secret-0123456789abcdef", 600, now_ms)
    anchor = signer.issue(User("u_anchor", "Mei", Role.ANCHOR))
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {anchor}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(url + "/api/rooms", json={"title": "R"}) as response:
            room = await response.json()
        async with http.post(url + "/api/products", json={
                "title": "Oil", "category": "essential_oil", "price_cents": 700}) as response:
            product = await response.json()
        async with http.post(url + f"/api/rooms/{room['id']}/sales", json={
                "product_id": product["id"], "stock": 10, "price_cents": 500,
                "per_user_limit": 1, "duration_s": 60}) as response:
            sale = await response.json()
    buyer = socketio.AsyncClient(reconnection=False)
    await buyer.connect(url, auth={"token": signer.issue(User("u_b", "B", Role.VIEWER,
                                                               phone_verified=True))},
                        transports=["websocket"])
    ack = await buyer.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "one"})
    await buyer.disconnect()
    assert ack["status"] == "reserved"

    database = tmp_path / "orders.sqlite3"
    recorded: list[tuple[str, str]] = []
    for _ in range(600):  # bounds failure only
        with sqlite3.connect(database) as connection:
            recorded = connection.execute("SELECT id, state FROM reservations").fetchall()
        if recorded:
            break
        await asyncio.sleep(0.1)
    assert recorded == [(ack["reservation"]["id"], "reserved")]

    assert await server.stop(signal.SIGTERM) == 0
    assert await _still_running(running) == [], "the hand-off consumer outlived the server"


async def test_token_alone_is_on_stdout(tmp_path: Path) -> None:
    code, out, err = await _run("token", "--role", "anchor", "--name", "Mei",
                                "--data-dir", str(tmp_path))
    assert code == 0
    assert len(out.split()) == 1, "TOKEN=$(liveroom token ...) must capture just the token"
    assert "anchor Mei" in err


async def test_serve_applies_the_transport_limits(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str,
) -> None:
    """``liveroom serve`` builds its runner with the header timeout, and the connection cap is on
    unless turned off (the other tests here turn it off: their clients are all 127.0.0.1)."""
    server = _server(tmp_path, LIVEROOM_HTTP_HEADER_TIMEOUT_S="1",
                     LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS="1", LIVEROOM_REDIS_URL=redis_url)
    await server.start()
    port = server.port
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/time HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b"", "closed, unanswered"
        writer.close()
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket")
            async with http.get(url + "/api/time") as response:
                assert response.status == 429
                assert response.headers["X-Frame-Options"] == "DENY"
                assert (await response.json())["error"]["code"] == "too_many_connections"
            await ws.close()
    finally:
        assert await server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://u@127.0.0.1/db", "must start with postgresql://"),
    ("postgresql://u@127.0.0.1:5432/", "names no database"),
    ("postgresql://u@127.0.0.1:99999/db", "Port out of range"),
    ("postgresql:///db", "names no host"),
])
async def test_serve_refuses_a_malformed_database_url_in_one_line(
    tmp_path: Path, url: str, says: str
) -> None:
    code, _, err = await _run("serve", "--data-dir", str(tmp_path), "--database-url", url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "DATABASE_URL" in err, err
    assert says in err, err


async def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://liveroom:hunter2@127.0.0.1:{free_port()}/liveroom"
    key = tmp_path / "signing.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    code, _, err = await _run("serve", "--data-dir", str(tmp_path), "--database-url", url,
                              env=_env(LIVEROOM_REDIS_URL="redis://127.0.0.1:1/0",
                                       LIVEROOM_SECRET="s" * 40,
                                       LIVEROOM_SIGNING_KEY_FILE=str(key)))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot reach the database" in err, err
    assert "hunter2" not in err, err


async def test_serve_with_a_database_but_no_shared_keys_says_what_to_set(tmp_path: Path) -> None:
    url = "postgresql://liveroom@127.0.0.1:5432/liveroom"
    code, _, err = await _run("serve", "--data-dir", str(tmp_path), "--database-url", url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "LIVEROOM_SECRET and LIVEROOM_SIGNING_KEY_FILE" in err, err


async def test_serve_refuses_an_unusable_signing_key_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    code, _, err = await _run("serve", "--data-dir", str(tmp_path),
                              env=_env(LIVEROOM_SIGNING_KEY_FILE=str(bad)))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "LIVEROOM_SIGNING_KEY_FILE" in err, err
    assert "not an unencrypted PEM private key" in err, err
