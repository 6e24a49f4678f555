"""GET /api/rtc/config and the relay's own ICE servers: short-lived TURN credentials per user
(the TURN REST API scheme coturn checks with ``use-auth-secret``), or the static pair."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from functools import partial
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from liveroom.media import RELAY_USER_ID, IceConfig, MediaService
from liveroom.settings import Settings, SettingsError
from tests.server_harness import live_server

TURN_SECRET = "turn-shared-secret-0123456789"
STUN = "stun:stun.example.net:3478"
TURN = "turn:turn.example.net:3478?transport=udp"


def expected_credential(secret: str, username: str) -> str:
    """What a TURN server with ``static-auth-secret=secret`` accepts for ``username``."""
    return base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


async def test_each_user_gets_their_own_short_lived_turn_credentials(
    redis: aioredis.Redis, redis_url: str, data_dir: Path,
) -> None:
    async with live_server(redis_url, data_dir, ice_servers=(STUN, TURN),
                           turn_secret=TURN_SECRET, turn_ttl_s=600) as server:
        status, body = await server.request("GET", "/api/rtc/config")
        assert (status, body["error"]["code"]) == (401, "unauthorized")

        # A guest session (no account) and an anchor: each gets credentials in its own name.
        status, guest = await server.request("POST", "/api/session", json={"name": "Guest"})
        assert status == 201
        users = [(guest["token"], guest["user"]["id"]),
                 (server.token("anchor", "Mei", user_id="u_mei"), "u_mei")]
        usernames = []
        for token, user_id in users:
            before_s = int(time.time())
            async with server.http.get(server.url + "/api/rtc/config", headers={
                    "Authorization": f"Bearer {token}"}) as response:
                after_s = int(time.time())
                assert response.status == 200
                assert response.headers["Cache-Control"] == "no-store"
                stun, turn = (await response.json())["ice_servers"]
            assert stun == {"urls": [STUN]}  # STUN needs no credentials
            assert turn["urls"] == [TURN]
            expiry, _, name = turn["username"].partition(":")
            assert name == user_id
            assert before_s + 600 <= int(expiry) <= after_s + 600
            assert turn["credential"] == expected_credential(TURN_SECRET, turn["username"])
            assert turn["credential"] != expected_credential("another secret", turn["username"])
            usernames.append(turn["username"])
        assert usernames[0] != usernames[1]

        # The relay's own peer connections authenticate as the relay, also short-lived.
        _, relay_turn = server.services.media.ice_servers
        assert relay_turn.urls == TURN
        assert relay_turn.username is not None
        assert relay_turn.username.endswith(f":{RELAY_USER_ID}")
        assert relay_turn.credential == expected_credential(TURN_SECRET, relay_turn.username)


def test_credentials_are_minted_fresh_from_the_one_clock() -> None:
    clock = [1_800_000_000_000]
    ice = IceConfig(Settings(ice_servers=(TURN,), turn_secret=TURN_SECRET), lambda: clock[0])
    (first,) = ice.servers_for("u_ann")
    assert first.username == f"{1_800_000_000 + 3600}:u_ann"  # the default TTL: one hour
    assert first.credential == expected_credential(TURN_SECRET, first.username)

    # The relay asks again for every new peer connection, so a broadcast started hours after
    # the server never uses an expired credential.
    media = MediaService(partial(ice.servers_for, RELAY_USER_ID))
    clock[0] += 2 * 3600 * 1000
    (later,) = media.ice_servers
    assert later.username == f"{1_800_000_000 + 3 * 3600}:{RELAY_USER_ID}"
    assert later.credential == expected_credential(TURN_SECRET, later.username)


def test_static_credentials_are_the_same_for_everyone() -> None:
    ice = IceConfig(Settings(ice_servers=(STUN, TURN), turn_username="alice",
                             turn_password="s3cret"), lambda: 0)
    for user_id in ("u_ann", "u_bob"):
        assert ice.browser_servers_for(user_id) == [
            {"urls": [STUN]}, {"urls": [TURN], "username": "alice", "credential": "s3cret"}]
    assert IceConfig(Settings(), lambda: 0).servers_for("u_ann") == []


@pytest.mark.parametrize("settings", [
    Settings(ice_servers=(TURN,)),
    Settings(ice_servers=("http://example.net",)),
    Settings(ice_servers=(TURN,), turn_secret=TURN_SECRET, turn_username="alice",
             turn_password="s3cret"),
])
def test_settings_built_without_from_env_are_still_checked(settings: Settings) -> None:
    with pytest.raises(SettingsError):
        IceConfig(settings, lambda: 0)
