"""The python-engineio internals the edge relies on (liveroom/sockets/_engineio/), and what they
buy: no permessage-deflate on the server's websockets, lean sockets for this server only. If
this fails after an upgrade, re-read the subpackage against the new engineio sources before
widening the pin."""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import aiohttp
import engineio
import orjson
import pytest
import socketio
from aiohttp import web
from engineio import async_server as engineio_async_server
from engineio import async_socket as engineio_async_socket
from engineio.async_drivers import aiohttp as engineio_aiohttp

from liveroom.doctor import Check
from liveroom.redis_server import free_port
from liveroom.settings import Settings
from liveroom.sockets import _engineio as internals
from liveroom.sockets._base import create_sio
from tests.server_harness import PATIENCE_S, LiveServer, live_server


def test_installed_engineio_is_a_checked_version() -> None:
    assert metadata.version("python-engineio") in internals.SUPPORTED_ENGINEIO_VERSIONS
    internals.check_engineio()


def test_driver_websocket_is_the_class_we_replace_and_builds_what_we_copy() -> None:
    assert engineio_aiohttp._async["websocket"] is engineio_aiohttp.WebSocket
    original = inspect.getsource(engineio_aiohttp.WebSocket.__call__)
    # Our __call__ is the original one plus compress=False; these are the lines it mirrors.
    for line in ("environ['aiohttp.request']", "max_msg_size=self.server.max_http_buffer_size",
                 "await self._sock.prepare(request)", "self.environ = environ",
                 "await self.handler(self)", "return self._sock"):
        assert line in original, line
    assert "compress" not in original  # else upstream may have grown its own switch
    assert list(inspect.signature(engineio_aiohttp.WebSocket.__init__).parameters) == [
        "self", "handler", "server"]
    for method in ("send", "wait", "close"):
        assert "self._sock" in inspect.getsource(getattr(engineio_aiohttp.WebSocket, method))


@pytest.mark.parametrize("check", internals.checks(), ids=lambda check: check.name)
def test_what_liveroom_doctor_checks_holds(check: Check) -> None:
    check.run()


def _syntax(function: Callable[..., Any],
            transform: ast.NodeTransformer | None = None) -> str:
    """``function``'s syntax tree without its docstring and annotations: what it does, not how
    it is written down."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    assert isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef)
    first = definition.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        definition.body = definition.body[1:]
    definition.returns = None
    for argument in definition.args.args:
        argument.annotation = None
    if transform is not None:
        tree = transform.visit(tree)
    return ast.dump(tree.body[0])


class _LeanSocketInstead(ast.NodeTransformer):
    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (node.attr == "AsyncSocket" and isinstance(node.value, ast.Name)
                and node.value.id == "async_socket"):
            return ast.Name("LeanSocket", ast.Load())
        return self.generic_visit(node)


class _WithoutCompressArgument(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        node.keywords = [keyword for keyword in node.keywords if keyword.arg != "compress"]
        return self.generic_visit(node)


def test_lean_engine_builds_sessions_exactly_as_engineio_does_but_from_lean_sockets() -> None:
    assert _syntax(internals.LeanEngine._handle_connect) == _syntax(
        engineio.AsyncServer._handle_connect, _LeanSocketInstead())


def test_the_uncompressed_websocket_is_engineios_but_for_compression() -> None:
    from liveroom.sockets._engineio._websocket import UncompressedWebSocket

    assert _syntax(UncompressedWebSocket.__call__, _WithoutCompressArgument()) == _syntax(
        engineio_aiohttp.WebSocket.__call__)


@asynccontextmanager
async def _serving(sio: socketio.AsyncServer) -> AsyncIterator[str]:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    finally:
        await runner.cleanup()


async def test_lean_sockets_are_one_servers_and_another_server_keeps_engineios_classes() -> None:
    ours = create_sio(Settings(), "redis://127.0.0.1:1/0")
    theirs = socketio.AsyncServer(async_mode="aiohttp")
    # Nothing of the libraries was replaced for the process.
    assert engineio_async_server.async_socket.AsyncSocket is engineio_async_socket.AsyncSocket
    assert engineio_async_socket.AsyncSocket is internals.LeanSocket.__mro__[1]
    assert engineio_aiohttp._async["websocket"] is engineio_aiohttp.WebSocket
    assert socketio.packet.Packet.json is engineio.json
    assert engineio.packet.Packet.json is engineio.json
    assert type(theirs.eio) is engineio.AsyncServer
    assert theirs.eio._async["websocket"] is engineio_aiohttp.WebSocket
    assert theirs.packet_class is socketio.packet.Packet
    assert type(ours.eio) is internals.LeanEngine
    async with (_serving(ours) as our_url, _serving(theirs) as their_url,
                aiohttp.ClientSession() as http):
        for url, sio, socket_class, extensions in (
                (our_url, ours, internals.LeanSocket, None),
                (their_url, theirs, engineio_async_socket.AsyncSocket, "permessage-deflate")):
            ws = await http.ws_connect(url, compress=15)
            try:
                assert ws._response.headers.get("Sec-WebSocket-Extensions", "").split(";")[0] \
                    == (extensions or "")
                assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")
                await ws.send_str("40")
                assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40{")
                [socket] = sio.eio.sockets.values()
                assert type(socket) is socket_class
            finally:
                await ws.close()


def test_another_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.metadata.version", lambda _name: "9.0.0")
    with pytest.raises(internals.EngineioIncompatible, match=r"9\.0\.0"):
        internals.check_engineio()


async def test_websocket_refuses_permessage_deflate_and_still_speaks_socketio(
        redis_url: str, data_dir: object) -> None:
    async with live_server(redis_url, data_dir) as server:  # type: ignore[arg-type]
        token = server.token()
        url = server.url + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as http:
            # compress=15 makes the client offer permessage-deflate, as browsers do.
            ws = await http.ws_connect(url, compress=15)
            try:
                assert "Sec-WebSocket-Extensions" not in ws._response.headers
                assert ws.compress == 0
                opened = await ws.receive_str(timeout=PATIENCE_S)
                assert opened.startswith("0{")
                await ws.send_str("40" + orjson.dumps({"token": token}).decode())
                assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40{")
                await ws.send_str('421["ping",{}]')
                ack = await ws.receive_str(timeout=PATIENCE_S)
                assert ack.startswith("431[")
                assert orjson.loads(ack[3:])[0]["ok"] is True
            finally:
                await ws.close()


def test_reaper_internals_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from liveroom.settings import Settings
    from liveroom.sockets._base import create_sio
    from liveroom.sockets._engineio import check_reaper_internals

    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
    check_reaper_internals(sio)
    monkeypatch.delattr(sio.eio, "sockets")
    with pytest.raises(internals.EngineioIncompatible):
        check_reaper_internals(sio)


async def _new_room(server: LiveServer, title: str) -> str:
    """A room of the anchor Mei; its id."""
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": title})
    return str(room["id"])


# The tests push announcements; the room's own pushes (``viewers`` after a join, half a second
# later) may come in between on a slow machine and are not what they count.
ANNOUNCEMENT = '42["announcement",'
VIEWERS_PUSH = '42["viewers",'


async def _events(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < count:
        text = await ws.receive_str(timeout=10)
        if text.startswith(ANNOUNCEMENT):
            out.append(orjson.loads(text[2:]))
    return out


async def test_broadcast_frames_of_every_length_reach_a_standard_client_intact(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir) as server:
        room_id = await _new_room(server, "Frames")
        ws = await server.raw_member(room_id, "Reader")
        # 7-bit, 16-bit and 64-bit payload lengths (RFC 6455 5.2), and text beyond ASCII.
        texts = ["x" * n for n in (1, 100, 125, 126, 4_000, 65_535, 70_000)] + ["玉镯 ✓ 🎉"]
        for text in texts:
            await server.services.sio.emit("announcement", {"text": text}, room=room_id)
        received = await _events(ws, len(texts))
        assert [data["text"] for _, data in received] == texts
        await ws.close()


async def test_acks_and_broadcasts_stay_in_order_while_a_client_falls_behind(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir) as server:
        room_id = await _new_room(server, "Order")
        ws = await server.raw_member(room_id, "Slow")
        # Ordering is under test, not the reaper: on a busy machine this reader may fall
        # further behind than the reaper allows a phone to, and be (rightly) cut for it.
        server.services.reaper.max_queued = 100_000
        sio = server.services.sio
        total = 3000
        payload = "y" * 6_000

        async def push() -> None:
            # The TCP buffers fill and drain while this runs, so packets go now one way (written
            # at once), now the other (queued behind unsent ones); a ping event in the middle.
            for number in range(total):
                await sio.emit("announcement", {"n": number, "pad": payload}, room=room_id)
                if number == total // 2:
                    await ws.send_str('427["ping",{}]')
                if number % 7 == 0:
                    await asyncio.sleep(0)

        pusher = asyncio.create_task(push())
        seen: list[int] = []
        ack_after = None
        while len(seen) < total or ack_after is None:
            text = await ws.receive_str(timeout=PATIENCE_S)
            if text.startswith("437"):
                ack_after = len(seen)
            elif text.startswith(ANNOUNCEMENT):
                seen.append(orjson.loads(text[2:])[1]["n"])
            if len(seen) % 50 == 0:
                await asyncio.sleep(0.002)  # a slow phone
        await pusher
        assert seen == list(range(total))
        # The ping left the client after push 1500: its answer cannot overtake them.
        assert ack_after is not None
        assert ack_after > total // 2
        await ws.close()


async def test_deferred_acks_stay_in_order_and_intact_while_a_client_falls_behind(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir) as server:
        room_id = await _new_room(server, "Deferred")
        ws = await server.raw_member(room_id, "Slow")
        # Ordering is under test, not the reaper: on a busy machine this reader may fall
        # further behind than the reaper allows a phone to, and be (rightly) cut for it.
        server.services.reaper.max_queued = 100_000
        sio = server.services.sio
        fast = server.services.edge.fast_events
        assert fast is not None
        loop = asyncio.get_running_loop()
        # Answered a moment later, as a decided buy is: written at once when the socket can
        # take it, else queued (as bytes already encoded) behind the pushes not yet written.

        def later(sid: str, args: list[Any], reply: Any) -> None:
            loop.call_soon(reply, {"n": args[0]["n"], "text": "玉镯 ✓", "pad": "z" * 300})

        fast.defer("later", later)
        total = 2000
        payload = "y" * 6_000

        async def push() -> None:
            for number in range(total):
                await sio.emit("announcement", {"n": number, "pad": payload}, room=room_id)
                if number % 400 == 0:
                    await ws.send_str(f'42{number}["later",{{"n":{number}}}]')
                if number % 7 == 0:
                    await asyncio.sleep(0)

        pusher = asyncio.create_task(push())
        seen: list[int] = []
        acks: list[tuple[int, int]] = []  # (ack id, pushes seen before it)
        while len(seen) < total or len(acks) < total // 400:
            text = await ws.receive_str(timeout=PATIENCE_S)
            if text.startswith("43"):
                digits = text[2:text.index("[")]
                answer = orjson.loads(text[2 + len(digits):])[0]
                assert answer == {"n": int(digits), "text": "玉镯 ✓", "pad": "z" * 300}
                acks.append((int(digits), len(seen)))
            elif text.startswith(ANNOUNCEMENT):
                seen.append(orjson.loads(text[2:])[1]["n"])
            if len(seen) % 50 == 0:
                await asyncio.sleep(0.01)  # a slow phone: the server's buffers fill
        await pusher
        assert seen == list(range(total))
        # Each answer left after the push of the same number: it cannot overtake it.
        assert [ack_id for ack_id, _ in acks] == list(range(0, total, 400))
        assert all(before > ack_id for ack_id, before in acks)
        await ws.close()


async def test_a_peer_gone_without_closing_is_cut_after_a_ping_cycle(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir) as server:
        room_id = await _new_room(server, "Gone")
        reaper = server.services.reaper
        assert reaper.max_silence_s == 40  # engineio's ping interval + ping timeout here
        reaper.max_silence_s = 0.5  # the same rule, on a test's time scale
        ws = await server.raw_member(room_id, "Vanished")
        (sid,) = server.sids_of("Vanished")
        before = reaper.dropped
        await asyncio.sleep(0.6)  # reads nothing, answers nothing
        # This sweep, or the reaper's own loop (once a second) if it came first on a busy
        # machine: either way the silent peer is cut once.
        await reaper.sweep()
        assert reaper.dropped == before + 1
        for _ in range(600):  # bounds failure only
            if sid not in server.services.edge.connections:
                break
            await asyncio.sleep(0.05)
        assert sid not in server.services.edge.connections
        await ws.close()


async def test_a_broadcast_to_lean_sockets_skips_whom_it_is_told_and_carries_binary(
        redis_url: str, data_dir: Any) -> None:
    # The broadcast loop handles one frame per member in its own branch; skip_sid (one sid or
    # a list) and binary data (a text frame plus an attachment) take the other ones.
    async with live_server(redis_url, data_dir) as server:
        room_id = await _new_room(server, "Skip")
        readers = [await server.raw_member(room_id, name) for name in ("Ann", "Bob", "Cy")]
        (ann_sid,), (bob_sid,) = server.sids_of("Ann"), server.sids_of("Bob")
        sio = server.services.sio
        await sio.emit("announcement", {"n": 1}, room=room_id, skip_sid=ann_sid)
        await sio.emit("announcement", {"n": 2}, room=room_id, skip_sid=[ann_sid, bob_sid])
        await sio.emit("announcement", {"n": 3, "blob": b"\x00\x01jade"}, room=room_id)
        seen: dict[int, list[Any]] = {}
        for index, ws in enumerate(readers):
            frames: list[Any] = []
            while len(frames) < {0: 2, 1: 3, 2: 4}[index]:
                message = await ws.receive(timeout=PATIENCE_S)
                if message.type == aiohttp.WSMsgType.BINARY or (
                        message.data.startswith("4")
                        and not message.data.startswith(VIEWERS_PUSH)):
                    frames.append(message.data)
            seen[index] = frames
            await ws.close()
        placeholder = '451-["announcement",{"n":3,"blob":{"_placeholder":true,"num":0}}]'
        assert seen[0] == [placeholder, b"\x00\x01jade"]
        assert seen[1] == ['42["announcement",{"n":1}]', placeholder, b"\x00\x01jade"]
        assert seen[2] == ['42["announcement",{"n":1}]', '42["announcement",{"n":2}]',
                           placeholder, b"\x00\x01jade"]


def test_handshake_deadline_internals_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from liveroom.settings import Settings
    from liveroom.sockets._base import create_sio
    from liveroom.sockets._engineio import check_handshake_internals
    from liveroom.sockets.handshakes import HandshakeDeadline

    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
    # python-socketio registers its engine connect handler where the deadline wraps it.
    assert sio.eio.handlers["connect"] == sio._handle_eio_connect
    assert sio.manager.sid_from_eio_sid("no-such-session", "/") is None
    HandshakeDeadline(sio, 5.0)
    assert sio.eio.handlers["connect"] != sio._handle_eio_connect
    check_handshake_internals(sio)
    monkeypatch.delitem(sio.eio.handlers, "connect")
    with pytest.raises(internals.EngineioIncompatible):
        check_handshake_internals(sio)


async def test_handshake_deadline_notes_sessions_and_lets_connected_ones_be(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir, socket_connect_timeout_s=0.5) as server:
        deadline = server.services.handshakes
        client = await server.connect(server.token())
        [eio_sid] = server.services.sio.eio.sockets
        assert server.services.sio.manager.sid_from_eio_sid(eio_sid, "/") is not None
        await asyncio.sleep(0.6)  # past the deadline
        # A sweep now, if the loop (every 0.125 s) has not had its turn on a busy machine.
        assert await deadline.sweep() == 0
        assert deadline.pending == 0
        assert deadline.closed == 0
        assert eio_sid in server.services.sio.eio.sockets
        assert (await client.call("ping", {}))["ok"]
