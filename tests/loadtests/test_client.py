"""The lean Socket.IO client against the real server's join and chat."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from loadtests import ConnectFailed, LeanSocket
from loadtests._api import ServerApi


async def test_a_guest_connects_joins_chats_and_the_room_sees_the_push(server):
    anchor = server.token("anchor", "Ann")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "lean"})
    pushes: list[tuple[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        api = ServerApi(session, server.url)
        token, user_id = await api.mint_session("lean buyer")
        talker = LeanSocket(session, server.url, token)
        listener = LeanSocket(session, server.url, server.token(name="Lis"),
                              on_push=lambda event, data: pushes.append((event, data)))
        await talker.connect()
        await listener.connect()
        assert talker.connected
        joined = await talker.call("join", {"room": room["id"]})
        assert joined["ok"] is True
        assert joined["room"]["id"] == room["id"]
        assert (await listener.call("join", {"room": room["id"]}))["ok"] is True
        said = await talker.call("chat", {"room": room["id"], "text": "  hello there "})
        assert said["ok"] is True
        assert said["message"]["text"] == "hello there"
        for _ in range(1500):  # bounds failure only
            if any(event == "chat" for event, _ in pushes):
                break
            await asyncio.sleep(0.02)
        chats = [data for event, data in pushes if event == "chat"]
        assert chats
        assert chats[0]["user"]["id"] == user_id
        refused = await talker.call("chat", {"room": "r_nope", "text": "x"})
        assert refused["ok"] is False
        assert refused["error"]["code"] in ("not_in_room",
                                                                       "unknown_room")
        await talker.close()
        await listener.close()
        assert talker.closed_reason is not None
        with pytest.raises(ConnectionResetError):
            await talker.call("chat", {"room": room["id"], "text": "after close"})


async def test_concurrent_calls_on_one_socket_get_their_own_answers(server):
    anchor = server.token("anchor", "Ann")
    rooms = [(await server.request("POST", "/api/rooms", anchor, {"title": f"t{i}"}))[1]
             for i in range(3)]
    async with aiohttp.ClientSession() as session:
        socket = LeanSocket(session, server.url, server.token())
        await socket.connect()
        answers = await asyncio.gather(*(socket.call("join", {"room": r["id"]})
                                         for r in rooms))
        assert [a["room"]["id"] for a in answers] == [r["id"] for r in rooms]
        await socket.close()


@pytest.mark.parametrize(("token", "code"), [("not-a-token", "token_malformed"),
                                             (None, "unauthorized")])
async def test_a_refused_token_raises_connect_failed_with_the_servers_code(server, token, code):
    async with aiohttp.ClientSession() as session:
        socket = LeanSocket(session, server.url, token)
        with pytest.raises(ConnectFailed) as caught:
            await socket.connect(timeout=5)
        assert caught.value.server_code == code
        assert not socket.connected


async def test_a_server_that_is_not_there_is_a_connect_failure():
    async with aiohttp.ClientSession() as session:
        socket = LeanSocket(session, "http://127.0.0.1:9", "t")
        with pytest.raises(ConnectFailed, match="websocket"):
            await socket.connect(timeout=5)
