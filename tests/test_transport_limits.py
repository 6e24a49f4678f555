"""Transport limits, as a client (or an attacker) meets them: connections that send half a
request are closed, slow bodies get 408, Engine.IO sessions without a Socket.IO connect are
closed, one address cannot hold more than its share of connections, and every response carries
the security headers.

Each limit is a setting; the tests use small values with wide margins (a busy 2-core machine
must pass them), and assert what the client sees: the connection closed, the status, the code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol
from multidict import CIMultiDict

from liveroom.http.transport import SECURITY_HEADERS, BodyDeadline
from tests.server_harness import PATIENCE_S, LiveServer, live_server

# Generous: the limits below are 1 s, and a busy machine may take a few more to act on them;
# but below what the limits stand against (a 100-byte trickle at 0.2 s a byte lasts 20 s, a long
# poll is answered by the 20 s ping), so a connection kept open by those fails the test.
CLOSE_WITHIN_S = 15.0
FAST = {"http_header_timeout_s": 1.0, "http_body_timeout_s": 1.0,
        "socket_connect_timeout_s": 1.0}


@asynccontextmanager
async def fast_server(redis_url: str, data_dir: Path, **overrides: Any
                      ) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, **{**FAST, **overrides}) as server:
        yield server


async def open_raw(server: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.settings.port)


async def closed_after(reader: asyncio.StreamReader, within_s: float = CLOSE_WITHIN_S,
                       trickle: tuple[asyncio.StreamWriter, bytes] | None = None
                       ) -> tuple[float, bytes]:
    """Read until the server closes the connection; (seconds it took, everything read). With
    ``trickle``, one more byte of it is sent every 0.2 s meanwhile."""
    started = time.monotonic()
    received = b""
    sent = 0
    async with asyncio.timeout(within_s):
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                if trickle is not None and sent < len(trickle[1]):
                    writer, data = trickle
                    try:
                        writer.write(data[sent:sent + 1])
                        await writer.drain()
                    except ConnectionError:
                        return time.monotonic() - started, received
                    sent += 1
                continue
            except ConnectionError:
                return time.monotonic() - started, received
            if not chunk:
                return time.monotonic() - started, received
            received += chunk


def response_of(raw: bytes) -> tuple[int, CIMultiDict[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return status, headers, body


# -- slow headers and bodies --------------------------------------------------------------------


async def test_half_sent_headers_are_closed(redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET /api/time HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        await writer.drain()
        took, received = await closed_after(reader)
        assert received == b""
        assert took < CLOSE_WITHIN_S
        writer.close()


async def test_a_trickle_of_header_bytes_does_not_keep_a_connection(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        reader, writer = await open_raw(server)
        writer.write(b"GET /api/time HTTP/1.1\r\n")
        await writer.drain()
        # One header byte every 0.2 s: 100 bytes would take 20 s.
        _, received = await closed_after(reader, trickle=(writer, b"X-Slow: " + b"a" * 100))
        assert received == b""
        writer.close()


async def test_a_connection_that_sends_nothing_and_an_idle_keep_alive_are_closed(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        silent_reader, silent = await open_raw(server)
        reader, writer = await open_raw(server)
        writer.write(b"GET /api/time HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        _, first = await closed_after(silent_reader)
        assert first == b""
        _, answered = await closed_after(reader)
        assert response_of(answered)[0] == 200, "answered, then closed once idle"
        silent.close()
        writer.close()


async def test_a_slow_body_gets_408_and_its_connection_closes(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                     b'{"name": "')
        await writer.drain()
        _, received = await closed_after(reader, trickle=(writer, b"a" * 80))
        status, headers, body = response_of(received)
        assert status == 408
        assert orjson.loads(body)["error"]["code"] == "request_timeout"
        assert headers.get("Connection") == "close"
        writer.close()
        # Nothing was done with the half body, and the server goes on.
        status, _ = await server.request("GET", "/api/time")
        assert status == 200


async def test_a_slow_body_to_a_route_that_refuses_before_reading_it_is_closed(
        redis_url: str, data_dir: Path) -> None:
    """POST /api/rooms without a token answers 401 at once; aiohttp then reads the rest of the
    body to let the client see the answer: the body deadline ends that too."""
    async with fast_server(redis_url, data_dir) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST /api/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        await writer.drain()
        _, received = await closed_after(reader, trickle=(writer, b"a" * 200))
        assert response_of(received)[0] == 401
        writer.close()


async def test_a_slow_payment_callback_body_gets_408(redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        reader, writer = await open_raw(server)
        writer.write(b"POST /api/payments/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"X-Sandbox-Signature: " + b"0" * 64 + b"\r\n"
                     b"Content-Length: 500\r\n\r\n{")
        await writer.drain()
        _, received = await closed_after(reader, trickle=(writer, b"a" * 100))
        status, _, body = response_of(received)
        assert (status, orjson.loads(body)["error"]["code"]) == (408, "request_timeout")
        writer.close()


async def test_ordinary_requests_and_bodies_are_unaffected(redis_url: str,
                                                           data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        for _ in range(3):
            status, body = await server.request("POST", "/api/session", json={"name": "Ann"})
            assert status == 201, body
            # Longer than the timeouts between requests: a new connection is simply opened.
            await asyncio.sleep(1.5)
        reader, writer = await open_raw(server)
        # A body sent in two parts, well within the limit.
        body = b'{"name": "Bo"}'
        writer.write(b"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body[:5])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(body[5:])
        await writer.drain()
        status, _, body = response_of(await asyncio.wait_for(reader.read(65536), 10))
        assert status == 201, body
        writer.close()


# -- Engine.IO sessions without a Socket.IO connect ---------------------------------------------


async def test_a_websocket_that_never_sends_the_socketio_connect_is_closed(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        url = server.url + "/socket.io/?EIO=4&transport=websocket"
        idle = await server.http.ws_connect(url)
        assert (await idle.receive_str(timeout=PATIENCE_S)).startswith("0{")  # engine.io open
        refused = await server.http.ws_connect(url)
        assert (await refused.receive_str(timeout=PATIENCE_S)).startswith("0{")
        await refused.send_str("40" + orjson.dumps({"token": "not-a-token"}).decode())
        assert (await refused.receive_str(timeout=PATIENCE_S)).startswith("44")  # connect_error
        member = await server.connect(server.token("viewer", "Kept"))
        started = time.monotonic()
        for ws in (idle, refused):
            message = await ws.receive(timeout=CLOSE_WITHIN_S)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR), message
        assert time.monotonic() - started < CLOSE_WITHIN_S
        await asyncio.sleep(1.5)  # past the deadline of the connected one too
        assert member.sio.connected
        assert (await member.call("ping", {}))["ok"]
        assert server.services.handshakes.closed == 2
        _, metrics = await _metrics(server)
        assert 'liveroom_socketio_handshake_timeouts_total{node="test-node"} 2' in metrics


async def test_a_polling_session_that_never_sends_the_socketio_connect_is_closed(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir) as server:
        async with server.http.get(server.url + "/socket.io/?EIO=4&transport=polling") as r:
            assert r.status == 200
            opened = await r.text()
        sid = orjson.loads(opened[1:])["sid"]
        poll = server.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        started = time.monotonic()
        # The pending long poll is answered when the session is closed (not after 20 s).
        async with server.http.get(
                poll, timeout=aiohttp.ClientTimeout(total=CLOSE_WITHIN_S + 5)) as r:
            await r.read()
        assert time.monotonic() - started < CLOSE_WITHIN_S
        async with server.http.get(poll) as r:
            assert r.status == 400, "the session is gone"
        assert sid not in server.services.sio.eio.sockets


async def _metrics(server: LiveServer) -> tuple[int, str]:
    async with server.http.get(server.url + "/metrics") as response:
        return response.status, await response.text()


# -- connections per client address -------------------------------------------------------------


async def _websocket(server: LiveServer, headers: dict[str, str] | None = None
                     ) -> aiohttp.ClientWebSocketResponse:
    ws = await server.http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket",
                                      headers=headers or {})
    assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")
    await ws.send_str("40" + orjson.dumps({"token": server.token()}).decode())
    assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40")
    return ws


async def test_an_address_over_its_cap_is_refused_429_and_others_are_served(
        redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir, max_connections_per_address=3) as server:
        sockets = [await _websocket(server) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _websocket(server)
        assert refused.value.status == 429
        async with server.http.get(server.url + "/api/time") as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
            body = await response.json()
        assert body["error"]["code"] == "too_many_connections"
        # A Socket.IO client sees its connection refused, not a hang.
        with pytest.raises(Exception):  # noqa: B017, PT011 (socketio.exceptions.ConnectionError)
            await server.connect(server.token())
        # What GET /metrics would show (127.0.0.1 cannot ask just now: it is at its cap).
        metrics = server.services.metrics.render()
        assert 'liveroom_busiest_address_connections{node="test-node"} 3' in metrics
        refused_line = next(line for line in metrics.splitlines() if line.startswith(
            'liveroom_connections_refused_total{node="test-node"} '))
        assert float(refused_line.split()[1]) >= 3
        # One closed: room for one more.
        await sockets.pop().close()
        await _until_admitted(server)
        sockets.append(await _websocket(server))
        for ws in sockets:
            await ws.close()


async def _until_admitted(server: LiveServer, within_s: float = PATIENCE_S) -> None:
    """Wait until a request from 127.0.0.1 is admitted again (a closed websocket's handler
    returns a moment after the client sees the close)."""
    deadline = time.monotonic() + within_s
    while True:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as r:
            if r.status == 200:
                return
        assert time.monotonic() < deadline, "never admitted again"
        await asyncio.sleep(0.05)


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_cap(
        redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir, max_connections_per_address=2,
                           trusted_proxies=("127.0.0.1",)) as server:
        first = [await _websocket(server, {"X-Forwarded-For": "203.0.113.7"}) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _websocket(server, {"X-Forwarded-For": "203.0.113.7"})
        assert refused.value.status == 429
        other = await _websocket(server, {"X-Forwarded-For": "198.51.100.9"})
        for ws in [*first, other]:
            await ws.close()


async def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_cap(
        redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir, max_connections_per_address=2) as server:
        held = [await _websocket(server, {"X-Forwarded-For": f"198.51.100.{i}"})
                for i in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _websocket(server, {"X-Forwarded-For": "198.51.100.77"})
        assert refused.value.status == 429
        for ws in held:
            await ws.close()


async def test_the_cap_is_off_at_zero(redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir, max_connections_per_address=0) as server:
        sockets = [await _websocket(server) for _ in range(20)]
        status, _ = await server.request("GET", "/api/time")
        assert status == 200
        for ws in sockets:
            await ws.close()


# -- security headers ---------------------------------------------------------------------------


def assert_security_headers(headers: Any, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (what, name, headers.get(name))
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'",
                      "base-uri 'none'", "frame-ancestors 'none'", "connect-src 'self'",
                      "img-src 'self' data: blob:", "media-src 'self' blob:"):
        assert directive in csp, (what, directive)
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


async def test_every_kind_of_response_carries_the_security_headers(
        redis_url: str, data_dir: Path) -> None:
    async with fast_server(redis_url, data_dir, max_connections_per_address=2) as server:
        room_token = server.token("anchor", "Mei")
        _, room = await server.request("POST", "/api/rooms", room_token, {"title": "Headers"})
        for method, path, status in (
                ("GET", "/", 200), ("GET", f"/r/{room['id']}", 200),
                ("GET", f"/studio/{room['id']}", 200), ("GET", "/inspect", 200),
                ("GET", "/verify/c_x", 200), ("GET", "/static/style.css", 200),
                ("GET", "/static/lr.js", 200), ("GET", "/static/missing.js", 404),
                ("GET", "/assets/socket.io.min.js", 200), ("GET", "/api/time", 200),
                ("GET", f"/api/rooms/{room['id']}", 200), ("GET", "/api/rooms/r_none", 404),
                ("GET", "/api/no-such-route", 404), ("GET", "/no-such-page", 404),
                ("DELETE", "/api/rooms", 405), ("GET", "/api/me", 401),
                ("POST", "/api/session", 400), ("GET", "/metrics", 200),
                ("GET", "/healthz", 200), ("GET", "/readyz", 200),
                ("GET", "/socket.io/?EIO=4&transport=polling", 200),
                ("GET", "/socket.io/?EIO=9&transport=polling", 400),
                ("GET", "/api/certificates/c_none/qr.svg", 404)):
            async with server.http.request(method, server.url + path) as response:
                assert response.status == status, (method, path, response.status)
                assert_security_headers(response.headers, f"{method} {path}")
        # 408
        reader, writer = await open_raw(server)
        writer.write(b"POST /api/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 10\r\n\r\n{")
        await writer.drain()
        _, received = await closed_after(reader)
        status, headers, _ = response_of(received)
        assert status == 408
        assert_security_headers(headers, "408")
        writer.close()
        # The websocket upgrade, then 429: 127.0.0.1's two connections are the websockets.
        sockets = [await server.http.ws_connect(
            server.url + "/socket.io/?EIO=4&transport=websocket") for _ in range(2)]
        assert_security_headers(sockets[0]._response.headers, "websocket upgrade")
        async with aiohttp.ClientSession() as other, other.get(server.url + "/") as response:
            assert response.status == 429
            assert_security_headers(response.headers, "429")
        for ws in sockets:
            await ws.close()


async def test_body_timers_have_an_owner_that_cancels_them() -> None:
    loop = asyncio.get_running_loop()
    deadline = BodyDeadline(0.2)
    arrived = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    deadline._arm(arrived)
    assert deadline.pending == 1
    arrived.feed_data(b"{}")
    arrived.feed_eof()
    assert deadline.pending == 0, "cancelled when the body's last byte arrives"
    late = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    deadline._arm(late)
    await asyncio.sleep(0.5)
    with pytest.raises(TimeoutError):
        await late.read()
    left = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    deadline._arm(left)
    await deadline.close()
    assert deadline.pending == 0
    await asyncio.sleep(0.5)
    left.feed_eof()
    assert await left.read() == b"", "a closed owner fails no body"
