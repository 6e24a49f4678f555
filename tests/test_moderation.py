"""Moderation that sticks to the person: limits per user and per address as well as per
connection, bans that a new guest session does not undo, slow mode per account; every frame a
client sends counts, and hostile frames are answered without tracebacks."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from tests.clock import Clock
from tests.server_harness import PATIENCE_S, LiveServer, live_server
from tests.test_socket_rooms import joined, make_room


async def test_ten_sockets_of_one_viewer_share_one_chat_budget(
        redis: aioredis.Redis, redis_url: str, data_dir: Path) -> None:
    clock = Clock()  # stands still: the budget refills only when the test says so
    # The address's own budget (all of 127.0.0.1 here) out of the way: the user's is tested.
    async with live_server(redis_url, data_dir, clock=clock,
                           chat_per_address_per_10s=1000) as server:
        _, room_id = await make_room(server)
        token = server.buyer_token("Chatty", user_id="u_chatty")
        sockets = []
        for _ in range(10):
            client = await server.connect(token)
            assert (await client.call("join", {"room": room_id}))["ok"]
            sockets.append(client)

        async def burst(size: int) -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(
                sockets[i % 10].call("chat", {"room": room_id, "text": f"m{i}"})
                for i in range(size))))

        # Within the event budget (every frame counts there too), so chat's own limit decides.
        acks = await burst(120)
        assert sum(a["ok"] for a in acks) == server.settings.chat_per_speaker_per_10s
        refused = [a["error"] for a in acks if not a["ok"]]
        assert {e["code"] for e in refused} == {"rate_limited"}
        assert all(0 < e["retry_after_ms"] <= 1000 for e in refused)
        # The budget refills evenly: one message a second for a budget of ten per ten seconds.
        clock.advance(3000)
        assert sum(a["ok"] for a in await burst(20)) == 3
        # Someone else is not held back by it.
        other = await joined(server, room_id, "Calm")
        assert (await other.call("chat", {"room": room_id, "text": "hello"}))["ok"]


async def test_the_people_at_one_address_share_its_chat_budget(
        redis: aioredis.Redis, redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir, clock=Clock(), chat_per_address_per_10s=25,
                           chat_per_speaker_per_10s=10) as server:
        _, room_id = await make_room(server)
        people = [await joined(server, room_id, f"p{n}") for n in range(4)]
        acks = await asyncio.gather(*(
            person.call("chat", {"room": room_id, "text": f"{n}"})
            for person in people for n in range(10)))
        assert sum(a["ok"] for a in acks) == 25
        refused = await people[0].call("chat", {"room": room_id, "text": "again"})
        assert refused["error"]["code"] == "rate_limited"


async def test_a_banned_guest_cannot_come_back_as_a_new_guest(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    assert (await anchor.call("join", {"room": room_id}))["ok"]
    # Another guest at the same address (a household), there before the ban.
    _, neighbour = await server.request("POST", "/api/session", json={"name": "Neighbour"})
    await asyncio.sleep(1.1)  # sessions are stamped to the second: the ban comes a second later
    _, troll = await server.request("POST", "/api/session", json={"name": "Troll"})
    troll_socket = await server.connect(troll["token"])
    assert (await troll_socket.call("join", {"room": room_id}))["ok"]
    neighbour_socket = await server.connect(neighbour["token"])
    assert (await neighbour_socket.call("join", {"room": room_id}))["ok"]
    ban = await anchor.call("mod:ban", {"room": room_id, "user": troll["user"]["id"]})
    assert ban["ok"]
    await troll_socket.wait_for("moderation", lambda m: m["action"] == "banned")

    # Time passes (the next second): a new session from the same address is the troll again.
    await asyncio.sleep(1.1)
    _, again = await server.request("POST", "/api/session", json={"name": "Totally new"})
    fresh = await server.connect(again["token"])
    refused = await fresh.call("join", {"room": room_id})
    assert refused["error"]["code"] == "banned"
    # The neighbour's session, made before the ban, is not the troll's evasion.
    assert (await neighbour_socket.call("chat", {"room": room_id, "text": "still here"}))["ok"]
    # A buyer account at that address is a person of its own.
    buyer = await server.connect(server.buyer_token("Buyer"))
    assert (await buyer.call("join", {"room": room_id}))["ok"]
    # Unbanned: the address is free again.
    assert (await anchor.call("mod:unban", {"room": room_id, "user": troll["user"]["id"]}))["ok"]
    assert (await fresh.call("join", {"room": room_id}))["ok"]


async def test_slow_mode_counts_the_account_not_the_connection(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    assert (await anchor.call("mod:slow", {"room": room_id, "seconds": 30}))["ok"]
    token = server.buyer_token("Two phones", user_id="u_two")
    first, second = await server.connect(token), await server.connect(token)
    for client in (first, second):
        assert (await client.call("join", {"room": room_id}))["ok"]
    assert (await first.call("chat", {"room": room_id, "text": "one"}))["ok"]
    refused = await second.call("chat", {"room": room_id, "text": "two"})
    assert refused["error"]["code"] == "slow_mode"


async def _raw_socket(server: LiveServer, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await server.http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")
    await ws.send_str("40" + orjson.dumps({"token": token}).decode())
    assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40")
    return ws


async def test_every_frame_counts_and_a_flood_is_cut_off(
        server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    ws = await _raw_socket(server, server.token("viewer", "Flood"))
    with caplog.at_level(logging.WARNING):
        # Pings, unknown events and garbage: none of them is free any more.
        for i in range(1000):
            kind = i % 3
            frame = (f'42{i}["ping",{{}}]' if kind == 0 else
                     f'42{i}["no-such-event"]' if kind == 1 else f"42{i}[{{")
            await ws.send_str(frame)
        answers: list[str] = []
        while True:
            message = await ws.receive(timeout=PATIENCE_S)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if message.data.startswith("43"):
                answers.append(message.data)
    limited = [a for a in answers if '"rate_limited"' in a]
    assert limited, "frames past the budget are answered rate_limited"
    assert len(answers) < 1000, "the connection was closed before the flood ended"
    assert len(answers) - len(limited) <= server.settings.event_burst + 20
    lines = [r for r in caplog.records if r.name.startswith("liveroom")]
    assert not any(r.exc_info for r in lines), "client mistakes leave no traceback"
    assert len(lines) <= 12, [r.getMessage() for r in lines]
    # Others are served meanwhile.
    calm = await server.connect(server.token("viewer", "Calm"))
    assert (await calm.call("ping", {}))["ok"]


@pytest.mark.parametrize(("frame", "answer_head"), [
    ('421["ping",' + "[" * 1100 + "]" * 1100 + "]", "431"),
    ('422["chat",{"room":"r","text":' + "7" * 5000 + "}]", "432"),
    ('423["ping",NaN]', "433"),
])
async def test_hostile_json_is_answered_not_logged_as_a_crash(
        server: LiveServer, caplog: pytest.LogCaptureFixture, frame: str,
        answer_head: str) -> None:
    ws = await _raw_socket(server, server.token("viewer", "Hostile"))
    with caplog.at_level(logging.WARNING):
        await ws.send_str(frame)
        answer = await ws.receive_str(timeout=PATIENCE_S)
    assert answer.startswith(answer_head + "[")
    (ack,) = orjson.loads(answer[len(answer_head):])
    assert ack["ok"] in (True, False)
    if not ack["ok"]:
        assert ack["error"]["code"] == "invalid_frame"
    assert not any(r.exc_info for r in caplog.records)
    await ws.send_str('424["ping",{}]')
    still = await ws.receive_str(timeout=PATIENCE_S)
    assert still.startswith("434"), "the connection still works"


async def test_a_token_with_any_bytes_is_refused_never_a_server_error(
        server: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    for token in (b"\xc3\xa9t\xc3\xa9.e30.abc", b"\xff\xfe", server.token().encode() + b"=="):
        writer.write(b"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                     token + b"\r\n\r\n")
        await writer.drain()
        status = await reader.readline()
        assert status.split()[1] == b"401", status
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = orjson.loads(await reader.readexactly(length))
        assert body["error"]["code"].startswith("token_") or body["error"]["code"] == \
            "unauthorized"
    writer.close()
    # The same tokens at the Socket.IO door are refused as such.
    ws = await server.http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    await ws.receive_str(timeout=PATIENCE_S)
    await ws.send_str('40{"token":"\u00e9t\u00e9.e30.abc"}')
    refusal = await ws.receive_str(timeout=PATIENCE_S)
    assert refusal.startswith("44")
    assert orjson.loads(refusal[2:])["data"]["code"] == "token_malformed"
