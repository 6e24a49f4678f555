"""The Socket.IO event fast path (liveroom/sockets/_engineio/_fast_events.py): the common event
frames are answered without python-socketio's packet machinery, byte for byte as python-socketio
would answer them; everything else still goes python-socketio's way."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
import socketio
from engineio import packet as engineio_packet
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as socketio_packet

from liveroom.settings import Settings
from liveroom.sockets._base import create_sio
from liveroom.sockets._engineio import FastEvents
from tests.server_harness import PATIENCE_S, live_server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


class _Socket:
    def __init__(self, eio_sid: str) -> None:
        self.sid = eio_sid
        self.sent: list[Any] = []

    async def send(self, pkt: Any) -> None:
        self.sent.append(pkt)

    def send_now(self, pkt: Any) -> None:
        self.sent.append(pkt)

    def send_encoded(self, encoded: bytes) -> None:
        self.sent.append(encoded)


async def _connected(sio: socketio.AsyncServer, eio_sid: str) -> str:
    sid = await sio.manager.connect(eio_sid, "/")
    assert isinstance(sid, str)
    return sid


@settings(max_examples=200, deadline=None)
@given(answer=json_values | st.tuples(json_values, json_values), ack_id=st.integers(0, 10**9))
def test_an_ack_is_the_frame_python_socketio_would_send(answer: Any, ack_id: int) -> None:
    async def run() -> None:
        sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
        calls: list[tuple[Any, ...]] = []

        async def handler(sid: str, *args: Any) -> Any:
            calls.append((sid, *args))
            return answer

        sio.on("echo", handler)
        fast = FastEvents(sio)
        socket = _Socket("eio1")
        sid = await _connected(sio, "eio1")
        frame = "42" + str(ack_id) + orjson.dumps(["echo", {"a": 1}, 2]).decode()
        assert await fast.handle(socket, frame)
        assert calls == [(sid, {"a": 1}, 2)]
        args = list(answer) if isinstance(answer, tuple) else [answer]
        if answer is None:
            args = []
        expected = sio.packet_class(socketio_packet.ACK, namespace="/", id=ack_id,
                                    data=args).encode()
        (sent,) = socket.sent
        assert sent.packet_type == engineio_packet.MESSAGE
        assert sent.data == expected

    asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(answer=json_values | st.tuples(json_values, json_values), ack_id=st.integers(0, 10**9),
       zeros=st.integers(0, 2))
def test_a_deferred_ack_is_the_frame_python_socketio_would_send(
        answer: Any, ack_id: int, zeros: int) -> None:
    async def run() -> None:
        sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
        fast = FastEvents(sio)
        loop = asyncio.get_running_loop()
        calls: list[tuple[str, list[Any]]] = []

        def handler(sid: str, args: list[Any], reply: Any) -> None:
            calls.append((sid, args))
            loop.call_later(0.001, reply, answer)  # answered later, as a decided buy is

        fast.defer("buy", handler)
        socket = _Socket("eio1")
        sid = await _connected(sio, "eio1")
        # An ack id written with leading zeros is still the number python-socketio reads.
        frame = "42" + "0" * zeros + str(ack_id) + orjson.dumps(["buy", {"a": 1}]).decode()
        assert await fast.handle(socket, frame)
        assert calls == [(sid, [{"a": 1}])]
        assert socket.sent == []  # the handler returned before its answer
        await asyncio.sleep(0.01)
        args = list(answer) if isinstance(answer, tuple) else [answer]
        if answer is None:
            args = []
        expected = sio.packet_class(socketio_packet.ACK, namespace="/", id=ack_id,
                                    data=args).encode()
        # Written as the engine packet python-socketio would hand to engineio, encoded.
        (sent,) = socket.sent
        assert sent == engineio_packet.Packet(engineio_packet.MESSAGE, expected).encode().encode()

    asyncio.run(run())


async def test_a_deferred_event_without_an_ack_gets_no_reply() -> None:
    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
    fast = FastEvents(sio)
    replies: list[Any] = []
    fast.defer("buy", lambda sid, args, reply: replies.append(reply))
    await _connected(sio, "eio1")
    assert await fast.handle(_Socket("eio1"), '42["buy",{}]')
    assert replies == [None]


@pytest.mark.parametrize("frame", [
    '42/admin,["ping",{}]',       # another namespace
    '421/admin,["ping",{}]',
    '42["nobody-handles-this"]',  # no handler of its own
])
async def test_anything_but_the_common_case_is_left_to_python_socketio(frame: str) -> None:
    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
    called = []

    async def ping(sid: str, *args: Any) -> dict[str, bool]:
        called.append(args)
        return {"ok": True}

    sio.on("ping", ping)
    socket = _Socket("eio1")
    await _connected(sio, "eio1")
    assert await FastEvents(sio).handle(socket, frame) is False
    assert called == []
    assert socket.sent == []


@pytest.mark.parametrize(("frame", "answered"), [
    ('427[1,2]', b"437"),                    # not an event name
    ('4207{"event":"ping"}', b"437"),        # not a list, ack id as a client may pad it
    ('428["ping",{]', b"438"),               # not JSON
    ('429[]', b"439"),
    ('4210["ping",' + "[" * 1100 + "]" * 1100 + "]", b"4310"),  # nested past orjson's bound
    ('4212["ping",' + "[" * 40 + "]" * 40 + "]", b"4312"),  # past ours (orjson would take it)
    ('4211["ping",' + "9" * 5000 + "]", b"4311"),  # an integer python would parse for long
    ('42[1,2]', None),                       # no ack id: nothing to answer
    ('42', None),
])
async def test_a_malformed_event_frame_is_answered_invalid_frame_not_passed_on(
        frame: str, answered: bytes | None) -> None:
    """python-socketio raises on these (a traceback in the log, and no answer)."""
    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")
    called = []

    async def ping(sid: str, *args: Any) -> dict[str, bool]:
        called.append(args)
        return {"ok": True}

    sio.on("ping", ping)
    socket = _Socket("eio1")
    await _connected(sio, "eio1")
    assert await FastEvents(sio).handle(socket, frame) is True
    assert called == []
    if answered is None:
        assert socket.sent == []
    else:
        (sent,) = socket.sent
        assert sent.startswith(answered + b"[")
        (ack,) = orjson.loads(sent[len(answered):])
        assert ack["ok"] is False
        assert ack["error"]["code"] == "invalid_frame"


async def test_a_socket_that_is_not_connected_yet_is_left_to_python_socketio() -> None:
    sio = create_sio(Settings(), "redis://127.0.0.1:1/0")

    async def ping(sid: str, *args: Any) -> dict[str, bool]:
        raise AssertionError("must not run")

    sio.on("ping", ping)
    await sio.manager.pre_connect("eio1", "/")  # connect handler still running
    assert await FastEvents(sio).handle(_Socket("eio1"), '421["ping",{}]') is False
    assert await FastEvents(sio).handle(_Socket("unknown"), '421["ping",{}]') is False


async def test_the_server_answers_events_through_the_fast_path_and_the_rest_as_before(
        redis_url: str, data_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with live_server(redis_url, data_dir) as server, aiohttp.ClientSession() as http:
        sio = server.services.sio
        slow_path: list[str] = []
        original = sio._handle_eio_message

        async def recording(eio_sid: str, data: Any) -> None:
            slow_path.append(data)
            await original(eio_sid, data)

        monkeypatch.setattr(sio, "_handle_eio_message", recording)
        sio.eio.on("message", recording)
        ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")
        await ws.send_str("40" + orjson.dumps({"token": server.token()}).decode())
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40")
        await ws.send_str('425["ping",{}]')
        ack = await ws.receive_str(timeout=PATIENCE_S)
        assert ack.startswith("435[")
        assert orjson.loads(ack[3:])[0]["ok"] is True
        # An event with a wrong payload is answered by its handler with an error, fast too.
        await ws.send_str('426["join",{"room":"not an id!"}]')
        refused = orjson.loads((await ws.receive_str(timeout=PATIENCE_S))[3:])[0]
        assert refused["ok"] is False
        assert refused["error"]["code"]
        assert [frame for frame in slow_path if not frame.startswith("0")] == []
        # An unknown event goes python-socketio's way, to the catch-all that refuses it.
        await ws.send_str('427["no-such-event",{}]')
        unknown = await ws.receive_str(timeout=PATIENCE_S)
        assert unknown.startswith("437[")
        assert orjson.loads(unknown[3:])[0]["error"]["code"] == "unknown_event"
        assert [frame for frame in slow_path if not frame.startswith("0")] == [
            '27["no-such-event",{}]']
        await ws.close()


async def test_a_client_cannot_raise_the_reserved_connect_and_disconnect_events(
        redis_url: str, data_dir: Any) -> None:
    async with live_server(redis_url, data_dir) as server:
        anchor = server.token("anchor", "Mei", user_id="u_mei")
        _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Reserved"})
        viewer = await server.connect(server.token("viewer", "Ann", user_id="u_ann"))
        assert (await viewer.call("join", {"room": room["id"]}))["ok"]
        (sid,) = server.sids_of("Ann")
        # python-socketio would call the server's own handlers for these names: "disconnect"
        # would forget the connection while its socket stays open, "connect" would swap its
        # identity for another token's.
        refused = await viewer.call("disconnect", {})
        assert refused["error"]["code"] == "unknown_event"
        refused = await viewer.call("connect", {"token": anchor})
        assert refused["error"]["code"] == "unknown_event"
        conn = server.services.edge.connections[sid]
        assert conn.user.id == "u_ann"
        assert room["id"] in conn.rooms
        said = await viewer.call("chat", {"room": room["id"], "text": "still here"})
        assert said["ok"]
        assert said["message"]["user"]["id"] == "u_ann"
        status, body = await server.request("GET", f"/api/rooms/{room['id']}")
        assert status == 200
        assert body["viewers"] == 1
