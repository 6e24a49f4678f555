"""The client address behind which limits and guest bans are kept: the TCP peer, or the
X-Forwarded-For hop a trusted proxy vouches for, never a header a client wrote itself."""

from __future__ import annotations

import pytest

from liveroom.addresses import UNKNOWN_ADDRESS, ClientAddresses, parse_networks
from liveroom.settings import Settings, SettingsError


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    addresses = ClientAddresses()
    assert addresses.resolve("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    assert addresses.resolve("::ffff:203.0.113.9", None) == "203.0.113.9"
    assert addresses.resolve(None, "198.51.100.1") == UNKNOWN_ADDRESS


def test_a_trusted_proxy_vouches_for_the_last_hop_it_did_not_write() -> None:
    addresses = ClientAddresses(parse_networks(["10.0.0.0/8", "127.0.0.1"]))
    # The client claims 1.1.1.1 itself; the proxy appended the real peer 198.51.100.7.
    assert addresses.resolve("10.1.2.3", "1.1.1.1, 198.51.100.7") == "198.51.100.7"
    # Two proxies of ours in a row are skipped.
    assert addresses.resolve("127.0.0.1", "198.51.100.7, 10.0.0.5") == "198.51.100.7"
    # A garbage hop stops the walk at the last address a proxy of ours wrote.
    assert addresses.resolve("10.1.2.3", "198.51.100.7, not-an-ip, 10.0.0.9") == "10.0.0.9"
    # An untrusted peer's header is ignored.
    assert addresses.resolve("192.0.2.1", "198.51.100.7") == "192.0.2.1"


def test_trusted_proxies_setting_is_checked_at_start() -> None:
    settings = Settings.from_env({"LIVEROOM_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert settings.trusted_proxies == ("10.0.0.0/8", "::1")
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({"LIVEROOM_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})
