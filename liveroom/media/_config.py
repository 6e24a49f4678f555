"""ICE server configuration: none by default, so LAN and loopback work with no STUN reachable.

TURN credentials come in two kinds (``Settings`` allows one at a time and has checked the
values before this module sees them):

* **Short-lived, per user** (``LIVEROOM_TURN_SECRET``): the TURN REST API scheme that coturn
  implements as ``use-auth-secret`` / ``static-auth-secret``. The username is
  ``"<expiry unix seconds>:<user id>"`` and the credential ``base64(HMAC-SHA1(secret,
  username))``; the TURN server recomputes the HMAC with the same secret, so nothing is shared
  but the secret, and a leaked credential stops opening new allocations at its expiry.
* **Static** (``LIVEROOM_TURN_USERNAME`` / ``LIVEROOM_TURN_PASSWORD``): one pair for everyone.
  Every signed-in user (guests included) can read it, which makes the TURN server an open relay
  for anyone who asks for a guest session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence

from aiortc import RTCIceServer

from ..settings import TURN_SCHEMES, Settings

__all__ = ["RELAY_USER_ID", "IceConfig", "browser_ice_servers", "turn_rest_credential"]

# The TURN user the relay's own peer connections authenticate as.
RELAY_USER_ID = "liveroom-relay"


def turn_rest_credential(secret: str, user_id: str, expires_at_s: int) -> tuple[str, str]:
    """``(username, credential)`` of the TURN REST API for ``user_id``, valid until the unix
    time ``expires_at_s``."""
    username = f"{expires_at_s}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class IceConfig:
    """The ICE servers of the settings, with the TURN credentials for whoever asks."""

    def __init__(self, settings: Settings, now_ms: Callable[[], int]) -> None:
        # The settings own the checks (scheme, credentials present, one kind only); settings
        # built without ``from_env`` are checked here, so a bad value never reaches aiortc.
        settings.validate()
        self._urls = settings.ice_servers
        self._secret = settings.turn_secret
        self._ttl_s = settings.turn_ttl_s
        self._static = (settings.turn_username, settings.turn_password)
        self._now_ms = now_ms

    def servers_for(self, user_id: str) -> list[RTCIceServer]:
        """aiortc ICE servers; TURN entries carry ``user_id``'s credentials (fresh ones, valid
        for the TTL from now, with a shared secret; the static pair otherwise)."""
        username, credential = self._credentials(user_id)
        return [RTCIceServer(urls=url, username=username, credential=credential)
                if url.startswith(TURN_SCHEMES) else RTCIceServer(urls=url)
                for url in self._urls]

    def browser_servers_for(self, user_id: str) -> list[dict[str, object]]:
        """The same, in the browser's ``RTCIceServer`` shape."""
        return browser_ice_servers(self.servers_for(user_id))

    def _credentials(self, user_id: str) -> tuple[str | None, str | None]:
        if self._secret:
            expires_at_s = self._now_ms() // 1000 + self._ttl_s
            return turn_rest_credential(self._secret, user_id, expires_at_s)
        return self._static


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
