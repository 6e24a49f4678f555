"""ICE server configuration: none by default, so LAN and loopback work with no STUN reachable."""

from __future__ import annotations

from collections.abc import Sequence

from aiortc import RTCIceServer

from .exceptions import InvalidIceServer

__all__ = ["browser_ice_servers", "ice_servers_from_settings"]

_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


def ice_servers_from_settings(
    urls: Sequence[str], username: str | None = None, password: str | None = None
) -> list[RTCIceServer]:
    """Build aiortc ICE servers from ``Settings.ice_servers`` / ``turn_username`` /
    ``turn_password``. TURN URLs get the credentials; STUN URLs never need them."""
    servers: list[RTCIceServer] = []
    for url in urls:
        if not url.startswith(_SCHEMES):
            raise InvalidIceServer(url, "must start with stun:, stuns:, turn: or turns:")
        if url.startswith(("turn:", "turns:")):
            if not username or not password:
                raise InvalidIceServer(url, "a TURN server needs a username and a password")
            servers.append(RTCIceServer(urls=url, username=username, credential=password))
        else:
            servers.append(RTCIceServer(urls=url))
    return servers


def browser_ice_servers(servers: Sequence[RTCIceServer]) -> list[dict[str, object]]:
    """The same servers in the browser's ``RTCIceServer`` shape (``{"urls": [...],
    "username"?, "credential"?}``), for ``new RTCPeerConnection({iceServers})``."""
    shaped: list[dict[str, object]] = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else list(server.urls)
        entry: dict[str, object] = {"urls": urls}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        shaped.append(entry)
    return shaped
