"""Who is at the other end: the client address of a request or a Socket.IO connection.

The peer address of the TCP connection is the client's, except when the peer is one of the
configured trusted proxies (``LIVEROOM_TRUSTED_PROXIES``): then ``X-Forwarded-For`` is read from
the right, skipping trusted proxies, and the first address that is not one is the client's. A
header from any other peer is ignored, so a client cannot choose its own address by sending one.

Per-address limits, bans of guests and the connection cap all key on this address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

__all__ = ["UNKNOWN_ADDRESS", "ClientAddresses", "parse_networks"]

# What a request whose peer address cannot be read (a closed transport) is counted as.
UNKNOWN_ADDRESS = "unknown"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.0/8``, ``127.0.0.1`` and ``::1`` style entries; ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {entry!r}") from None
    return tuple(networks)


def _canonical(text: str) -> str | None:
    """The address in its canonical spelling (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class ClientAddresses:
    """``unlimited`` addresses (``LIVEROOM_UNLIMITED_ADDRESSES``, e.g. a load generator's) are
    exempt from every per-address limit; per-connection and per-user limits still apply."""

    def __init__(self, trusted_proxies: Iterable[Network] = (),
                 unlimited: Iterable[Network] = ()) -> None:
        self._trusted = tuple(trusted_proxies)
        self._unlimited = tuple(unlimited)

    def unlimited(self, address: str) -> bool:
        if not self._unlimited or address == UNKNOWN_ADDRESS:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self._unlimited)

    @property
    def behind_proxy(self) -> bool:
        return bool(self._trusted)

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client address given the TCP peer and the ``X-Forwarded-For`` header."""
        address = _canonical(peer) if peer else None
        if address is None:
            return UNKNOWN_ADDRESS
        if not forwarded_for or not self._is_trusted(address):
            return address
        for hop in reversed(forwarded_for.split(",")):
            candidate = _canonical(hop)
            if candidate is None:
                # A hop a proxy of ours did not write: stop at the last address we can vouch for.
                return address
            address = candidate
            if not self._is_trusted(candidate):
                return candidate
        return address

    def of_request(self, request: web.BaseRequest) -> str:
        peer = None
        transport = request.transport
        if transport is not None:
            peername = transport.get_extra_info("peername")
            if isinstance(peername, tuple) and peername:
                peer = str(peername[0])
        return self.resolve(peer, request.headers.get("X-Forwarded-For"))

    def of_environ(self, environ: Mapping[str, Any]) -> str:
        """The address of a Socket.IO connection, from python-engineio's environ."""
        request = environ.get("aiohttp.request")
        if isinstance(request, web.BaseRequest):
            return self.of_request(request)
        return UNKNOWN_ADDRESS
