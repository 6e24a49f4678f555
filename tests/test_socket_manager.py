"""The room index and direct broadcast of liveroom/sockets/_engineio/_manager.py against
python-socketio's own manager: same rooms, same answers, same packets delivered, for any
sequence of connects, joins, leaves, room closes and disconnects. If this fails after an
upgrade, re-read the module against the new socketio/base_manager.py before widening the pin."""

from __future__ import annotations

import asyncio
import inspect
import time
from importlib import metadata
from typing import Any

import pytest
import socketio
from engineio import async_socket as engineio_async_socket
from hypothesis import given, settings
from hypothesis import strategies as st

from liveroom.sockets import _engineio
from liveroom.sockets._engineio import IndexedAsyncManager, IndexedAsyncRedisManager, LeanSocket

NS = "/"


class _Socket:
    """The parts of an engineio socket a local broadcast touches."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        self.last_ping: float | None = None

    async def send(self, pkt: Any) -> None:  # engineio's send, for the plain manager
        await self.queue.put(pkt)

    def texts(self) -> list[str]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait().data)
        return out


def _server(manager: socketio.AsyncManager) -> socketio.AsyncServer:
    server = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    server.eio.sockets = {}
    return server


class _Pair:
    """The same operations on python-socketio's manager and ours."""

    def __init__(self) -> None:
        self.plain = socketio.AsyncManager()
        self.indexed = IndexedAsyncManager()
        self.servers = [_server(self.plain), _server(self.indexed)]
        self.sids: list[tuple[str, str]] = []  # (sid in plain, sid in indexed)

    @classmethod
    async def with_room(cls, connected: int, in_room: int) -> _Pair:
        """``connected`` sockets ``e0``, ``e1``, ... on both managers; the first ``in_room`` of
        them in ``"room"``."""
        pair = cls()
        for number in range(connected):
            await pair.connect(f"e{number}")
        for plain_sid, indexed_sid in pair.sids[:in_room]:
            await pair.plain.enter_room(plain_sid, NS, "room")
            await pair.indexed.enter_room(indexed_sid, NS, "room")
        return pair

    def received(self) -> dict[str, tuple[list[str], list[str]]]:
        """What each socket got so far, through python-socketio's manager and through ours."""
        plain_sockets, indexed_sockets = (self.servers[0].eio.sockets,
                                          self.servers[1].eio.sockets)
        return {eio: (plain_sockets[eio].texts(), indexed_sockets[eio].texts())
                for eio in plain_sockets}

    async def connect(self, eio_sid: str) -> None:
        pair = []
        for server, manager in zip(self.servers, (self.plain, self.indexed), strict=True):
            server.eio.sockets[eio_sid] = _Socket()
            pair.append(await manager.connect(eio_sid, NS))
        self.sids.append((pair[0], pair[1]))

    async def apply(self, op: str, who: int, room: str) -> None:
        if not self.sids:
            return
        plain_sid, indexed_sid = self.sids[who % len(self.sids)]
        if op == "enter":
            await self.plain.enter_room(plain_sid, NS, room)
            await self.indexed.enter_room(indexed_sid, NS, room)
        elif op == "leave":
            await self.plain.leave_room(plain_sid, NS, room)
            await self.indexed.leave_room(indexed_sid, NS, room)
        elif op == "close":
            await self.plain.close_room(room, NS)
            await self.indexed.close_room(room, NS)
        elif op == "disconnect":
            await self.plain.disconnect(plain_sid, NS)
            await self.indexed.disconnect(indexed_sid, NS)
            self.sids.remove((plain_sid, indexed_sid))

    def same(self) -> None:
        to_plain = {indexed: plain for plain, indexed in self.sids}

        def translated(rooms: dict[Any, Any]) -> dict[Any, dict[str, str]]:
            return {to_plain.get(room, room): {to_plain[sid]: eio for sid, eio in members.items()}
                    for room, members in rooms.items()}

        assert translated(self.indexed.rooms.get(NS, {})) == {
            room: dict(members) for room, members in self.plain.rooms.get(NS, {}).items()}
        for plain_sid, indexed_sid in self.sids:
            assert sorted(self.plain.get_rooms(plain_sid, NS), key=str) == sorted(
                (to_plain.get(room, room) for room in self.indexed.get_rooms(indexed_sid, NS)),
                key=str)
            assert self.indexed.is_connected(indexed_sid, NS)
        assert not self.indexed.pending_connect
        assert not self.indexed.pending_disconnect


operations = st.lists(st.tuples(st.sampled_from(["enter", "enter", "leave", "close",
                                                 "disconnect", "connect"]),
                                st.integers(0, 50), st.sampled_from(["r1", "r2", "r3"])),
                      max_size=60)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_rooms_match_python_socketios_own_manager(ops: list[tuple[str, int, str]]) -> None:
    async def run() -> None:
        pair = _Pair()
        for number, (op, who, room) in enumerate(ops):
            if op == "connect" or not pair.sids:
                await pair.connect(f"e{number}")
            else:
                await pair.apply(op, who, room)
            pair.same()
        # Everyone leaves: nothing is left behind in either structure.
        while pair.sids:
            await pair.apply("disconnect", 0, "")
        assert pair.indexed.rooms == pair.plain.rooms == {}
        assert pair.indexed._rooms_of == {}

    asyncio.run(run())


async def test_a_broadcast_reaches_the_same_sockets_with_the_same_frames() -> None:
    pair = await _Pair.with_room(connected=6, in_room=4)
    skip = pair.sids[1]
    for manager, which in ((pair.plain, 0), (pair.indexed, 1)):
        await manager.emit("stock", {"remaining": 3}, NS, room="room", skip_sid=skip[which])
        await manager.emit("hello", ("a", 1), NS)
    received = pair.received()
    for eio, (plain, indexed) in received.items():
        assert plain == indexed, eio
    assert received["e0"][1] == ['2["stock",{"remaining":3}]', '2["hello","a",1]']
    assert received["e1"][1] == ['2["hello","a",1]']  # skipped for the room push
    assert received["e5"][1] == ['2["hello","a",1]']  # not in the room


async def test_events_emitted_together_arrive_as_the_same_emits_one_after_another() -> None:
    pair = await _Pair.with_room(connected=3, in_room=2)
    await pair.plain.emit("stock", {"remaining": 0}, NS, room="room")
    await pair.plain.emit("sale", {"status": "sold_out"}, NS, room="room")
    await pair.indexed.emit_together(
        [("stock", {"remaining": 0}), ("sale", {"status": "sold_out"})], NS, "room")
    received = pair.received()
    for eio, (plain, indexed) in received.items():
        assert plain == indexed, eio
    assert received["e0"][1] == ['2["stock",{"remaining":0}]', '2["sale",{"status":"sold_out"}]']
    assert received["e2"][1] == []


async def test_a_big_rooms_broadcast_lets_the_loop_run_and_keeps_broadcasts_in_order() -> None:
    manager = IndexedAsyncManager()
    manager.FAN_OUT_SLICE = 10
    server = _server(manager)
    members = [f"e{number}" for number in range(100)]
    for number, eio_sid in enumerate(members):
        server.eio.sockets[eio_sid] = _Socket()
        sid = await manager.connect(eio_sid, NS)
        await manager.enter_room(sid, NS, "room")
        if number >= 90:
            await manager.enter_room(sid, NS, "last ten")
    reached_meanwhile: list[int] = []

    def meanwhile() -> None:  # what the loop would do for a buy read mid-broadcast
        reached_meanwhile.append(sum(not server.eio.sockets[e].queue.empty() for e in members))

    first = asyncio.create_task(manager.emit("stock", {"remaining": 3}, NS, room="room"))
    await asyncio.sleep(0)  # the first broadcast is under way when the second is emitted
    asyncio.get_running_loop().call_soon(meanwhile)
    # A small room's broadcast, whose members the big one has not reached yet, waits its turn.
    second = asyncio.create_task(manager.emit("chat", {"text": "hi"}, NS, room="last ten"))
    await asyncio.gather(first, second)
    assert len(reached_meanwhile) == 1
    assert 0 < reached_meanwhile[0] < len(members)  # some members reached, not all
    for number, eio_sid in enumerate(members):
        expected = ['2["stock",{"remaining":3}]'] + (
            ['2["chat",{"text":"hi"}]'] if number >= 90 else [])
        assert server.eio.sockets[eio_sid].texts() == expected, eio_sid


async def test_a_socket_that_missed_its_pings_is_closed_not_queued() -> None:
    manager = IndexedAsyncManager()
    server = _server(manager)
    closed: list[str] = []

    class Silent(_Socket):
        async def send(self, pkt: Any) -> None:
            closed.append(pkt.data)
            self.closed = True

    server.eio.sockets["alive"] = _Socket()
    server.eio.sockets["silent"] = Silent()
    server.eio.sockets["silent"].last_ping = time.time() - 10 * server.eio.ping_timeout
    for eio_sid in ("alive", "silent"):
        await manager.enter_room(await manager.connect(eio_sid, NS), NS, "room")
    await manager.emit("chat", {"text": "hi"}, NS, room="room")
    assert server.eio.sockets["alive"].texts() == ['2["chat",{"text":"hi"}]']
    assert server.eio.sockets["silent"].queue.empty()
    assert closed == ['2["chat",{"text":"hi"}]']  # engineio's send ran, and closed it


async def test_the_redis_manager_delivers_a_remote_broadcast_locally_the_same_way() -> None:
    # What another worker published reaches this worker's sockets through DirectLocalEmit.
    manager = IndexedAsyncRedisManager("redis://127.0.0.1:1/0")  # never connected here
    server = _server(manager)
    for eio_sid in ("a", "b"):
        server.eio.sockets[eio_sid] = _Socket()
    await manager.enter_room(await manager.connect("a", NS), NS, "room")
    await manager.connect("b", NS)
    tasks_before = len(asyncio.all_tasks())
    await manager._handle_emit({"method": "emit", "event": "stock", "data": [{"remaining": 0}],
                                "namespace": NS, "room": "room", "host_id": "elsewhere"})
    assert len(asyncio.all_tasks()) == tasks_before
    assert server.eio.sockets["a"].texts() == ['2["stock",{"remaining":0}]']
    assert server.eio.sockets["b"].texts() == []


def test_the_base_manager_still_is_what_the_index_was_written_against() -> None:
    assert metadata.version("python-socketio") in _engineio.SUPPORTED_SOCKETIO_VERSIONS
    base = inspect.getsource(socketio.base_manager.BaseManager)
    for line in ("self.rooms[namespace][room][sid] = eio_sid",
                 "del self.rooms[namespace][room][sid]",
                 "self.pending_connect[namespace] = []",
                 "self.pending_disconnect[namespace] = []",
                 "del self.callbacks[sid]"):
        assert line in base, line
    emit = inspect.getsource(socketio.AsyncManager.emit)
    assert "self.server._send_eio_packet(eio_sid, p)" in emit
    # engineio's own class, whose send LeanSocket replaces.
    send = inspect.getsource(LeanSocket.__bases__[0].send)
    assert LeanSocket.__bases__[0].__module__ == engineio_async_socket.__name__
    assert "await self.check_ping_timeout()" in send
    assert "self.queue.put(pkt)" in send


def test_another_socketio_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.metadata.version", lambda _name: "9.0.0")
    with pytest.raises(_engineio.SocketioIncompatible):
        IndexedAsyncManager()
