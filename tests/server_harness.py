"""Run the real app on a free loopback port inside the test's event loop, with real clients."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import socketio
from aiohttp import web
from multidict import CIMultiDict

from liveroom.accounts import buyer
from liveroom.app import Services, create_app, services_of
from liveroom.clock import now_ms
from liveroom.http.transport import runner_options
from liveroom.identity import Role, User, new_user_id
from liveroom.redis_server import free_port
from liveroom.settings import Settings

TEST_SECRET = "test-secret-0123456789abcdef-0123456789"

# How long a test waits for a push, a reply or a state before it fails. It bounds only failure:
# on a busy machine (other suites, CPU hogs: 3-6x slower) what takes 0.2 s here may take seconds,
# and a test that asserts something happens must not fail because the machine was slow.
PATIENCE_S = 30.0


@dataclass
class LiveServer:
    url: str
    settings: Settings
    services: Services
    http: aiohttp.ClientSession
    clients: list[socketio.AsyncClient] = field(default_factory=list)

    def token(self, role: str = "viewer", name: str = "Tester", user_id: str | None = None) -> str:
        """A token of an unverified user: for a viewer, a guest (may watch and chat, not buy)."""
        user = User(id=user_id or new_user_id(), name=name, role=Role(role))
        return self.services.signer.issue(user)

    def buyer_token(self, name: str = "Buyer", phone: str | None = None,
                    user_id: str | None = None) -> str:
        """A buyer account's token, as ``POST /api/accounts/verify`` gives it (a fresh phone
        unless one is given); with ``user_id``, a verified user of that id."""
        if user_id is not None:
            user = User(id=user_id, name=name, role=Role.VIEWER, phone_verified=True)
        else:
            phone = phone or f"+999{secrets.randbelow(10**11):011d}"
            user = buyer(self.settings.resolve_secret(), phone, name)
        return self.services.signer.issue(user)

    async def request(self, method: str, path: str, token: str | None = None,
                      json: Any = None, data: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.url + path, json=json, data=data,
                                     headers=headers) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def raw_request(self, head: bytes, body: bytes = b"", timeout: float = PATIENCE_S
                          ) -> tuple[int, CIMultiDict[str], bytes]:
        """Send ``head`` (request line and header lines, bytes no HTTP client would send) with
        ``Connection: close`` and ``body``; the answer's status, headers and body."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.settings.port)
        try:
            extra = b"Content-Length: %d\r\n" % len(body) if body else b""
            writer.write(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n" + extra
                         + b"\r\n" + body)
            await writer.drain()
            async with asyncio.timeout(timeout):
                raw = await reader.read(-1)
        finally:
            writer.close()
        top, _, content = raw.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        return int(lines[0].split()[1]), headers, content

    async def connect(self, token: str) -> Client:
        sio = socketio.AsyncClient(reconnection=False)
        client = Client(sio)
        sio.on("*", client._record)
        await sio.connect(self.url, auth={"token": token}, transports=["websocket"])
        self.clients.append(sio)
        return client

    async def raw_member(self, room_id: str, name: str) -> aiohttp.ClientWebSocketResponse:
        """A raw websocket Socket.IO client that joined ``room_id``; it reads only when told
        (the frames on the wire, and a client that stops reading, are what tests see here)."""
        ws = await self.http.ws_connect(
            self.url + "/socket.io/?EIO=4&transport=websocket", max_msg_size=0)
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")  # engine.io open
        await ws.send_str("40" + orjson.dumps({"token": self.token("viewer", name)}).decode())
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40")  # socket.io connect
        await ws.send_str("421" + orjson.dumps(["join", {"room": room_id}]).decode())
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("431")  # the join ack
        return ws

    def sids_of(self, name: str) -> list[str]:
        """The Socket.IO sids of this process's connections whose user is called ``name``."""
        return [sid for sid, conn in self.services.edge.connections.items()
                if conn.user.name == name]


@dataclass
class Client:
    sio: socketio.AsyncClient
    events: list[tuple[str, Any]] = field(default_factory=list)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    async def call(self, event: str, data: Any = None, timeout: float = PATIENCE_S) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, event: str, predicate: Any = None,
                       timeout: float = PATIENCE_S) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for data in self.received(event):
                if predicate is None or predicate(data):
                    return data
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event!r} event matching within {timeout}s: {self.events!r}")


TEST_NODE = "test-node"


@asynccontextmanager
async def live_server(
    redis_url: str, data_dir: Path, *, clock: Callable[[], int] = now_ms, **overrides: Any
) -> AsyncIterator[LiveServer]:
    """The app on a free port; ``clock`` is its one clock (a ``tests.clock.Clock`` stands still
    until the test moves it)."""
    # Tests sign buyers in as the demo and load tests do: one-time codes are echoed.
    overrides.setdefault("otp_echo", True)
    # Tests drive many connections from 127.0.0.1: the per-address cap is off unless a test
    # turns it on.
    overrides.setdefault("max_connections_per_address", 0)
    # Every metric series carries the node's name.
    overrides.setdefault("node_name", TEST_NODE)
    settings = Settings(data_dir=data_dir, secret=TEST_SECRET, port=free_port(), **overrides)
    app = create_app(settings, redis_url, clock=clock)
    # The runner ``liveroom serve`` builds: the same header timeout.
    runner = web.AppRunner(app, access_log=None, **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    http = aiohttp.ClientSession()
    server = LiveServer(url=f"http://127.0.0.1:{settings.port}", settings=settings,
                        services=services_of(app), http=http)
    try:
        yield server
    finally:
        for client in server.clients:
            if client.connected:
                await client.disconnect()
        await http.close()
        await runner.cleanup()
