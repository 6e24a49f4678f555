"""Settings: read once from flags and ``LIVEROOM_*`` environment variables, then passed down.

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from database import DatabaseUrlError, check_database_url

from .addresses import parse_networks
from .redis_target import parse_redis_url

__all__ = ["Settings", "SettingsError"]

ENV_PREFIX = "LIVEROOM_"
# host[:port] with a DNS name or IPv4 address, or [IPv6][:port].
_HOST_ENTRY = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                         r"(?::[0-9]{1,5})?$")
_PUBLIC_URL = re.compile(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$")
ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
TURN_SCHEMES = ("turn:", "turns:")


class SettingsError(ValueError):
    """A flag or environment variable has a value the server cannot use."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"not a boolean: {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # None means: start an embedded redis-server child in the data dir. A plain server
    # (redis://, rediss://, unix://) or a service behind Redis Sentinel:
    # redis+sentinel://[[user]:password@]host:port[,host:port...]/service[?db=N]
    # (liveroom/redis_target.py).
    redis_url: str | None = None
    # Each buy batch is answered only once a replica has its effects (WAIT 1), whenever the
    # primary has a replica; false answers from the primary alone (a failover may then lose
    # acknowledged reservations). A replica that has not confirmed within the timeout makes the
    # batch's reservations answer store_unavailable (docs/reliability.md, "Redis Sentinel").
    redis_wait_replica: bool = True
    redis_wait_timeout_ms: int = 500
    # The ``node`` label of every metric series (each node is scraped on its own); None: the
    # machine's host name.
    node_name: str | None = None
    data_dir: Path = Path("./var")
    # None: orders and certificates in SQLite files in the data dir (one machine). A
    # postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL: in that PostgreSQL, shared by every
    # node (migrated at start, once, however many nodes start together).
    database_url: str | None = None
    # The certificate signing key (an Ed25519 private key, PKCS#8 PEM). None: the key in the
    # data dir, made on first start. Nodes sharing a database share this file; the public keys
    # of keys used before are kept in the database, so a rotated-out key still verifies.
    signing_key_file: Path | None = None
    # None means: use (or create) ``<data_dir>/secret``.
    secret: str | None = None
    demo: bool = False
    # One-time sign-in codes are also returned in the answer to ``POST /api/accounts/otp`` (and
    # test buyers can be minted in bulk): for the demo, tests and load tests, never production.
    # ``--demo`` turns it on unless LIVEROOM_OTP_ECHO says otherwise.
    otp_echo: bool = False
    otp_codes_per_address_per_hour: int = 20
    guest_sessions_per_address_per_min: int = 30
    workers: int = 1
    # ``serve`` also starts this many ``hls-edge`` processes (supervised like the workers, one
    # port shared with SO_REUSEPORT: ``hls_port``, 0 for the server's port + 1) for the cache's
    # ``location /hls/`` (docs/deploy.md). 0: none; the servers answer ``/hls/`` themselves.
    hls_edges: int = 0
    hls_port: int = 0
    token_ttl_s: int = 7 * 24 * 3600
    redis_server_bin: str = "redis-server"
    # WebRTC: no ICE servers by default, so LAN and loopback work with no STUN reachable.
    ice_servers: tuple[str, ...] = ()
    # TURN credentials, one of two kinds (never both): a shared secret (coturn's
    # ``use-auth-secret``), from which every user gets their own credentials valid for
    # ``turn_ttl_s``; or one static username and password, handed to every signed-in user.
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    turn_username: str | None = None
    turn_password: str | None = None
    # Edge limits.
    max_payload_bytes: int = 64 * 1024
    chat_max_chars: int = 500
    # Chat messages per 10 s of one account (or of one guest address), and of all the accounts
    # at one client address, however many connections they use; 0 turns a limit off.
    chat_per_speaker_per_10s: int = 10
    chat_per_address_per_10s: int = 60
    buy_rate_per_s: float = 5.0
    buy_burst: int = 10
    # Under a steady stream of buys (over 200 a second) a batch waits for about
    # ``buy_batch_target`` buys, at most ``buy_batch_max_ms``: latency for the buyer against CPU
    # per buy (inventory/_batcher.py, docs/performance.md "Session 5").
    buy_batch_max_ms: int = 25
    buy_batch_target: int = 32
    # The event budget: frames per second (and burst) of one connection, of one user's
    # connections together, and of all connections from one client address; 0 turns the user
    # or address budget off (a load test from one address needs the address budget off).
    event_rate_per_s: float = 50.0
    event_burst: int = 100
    user_event_rate_per_s: float = 100.0
    user_event_burst: int = 200
    address_event_rate_per_s: float = 2000.0
    address_event_burst: int = 4000
    log_level: str = "info"
    # "text" or "json" (one JSON object per line, see liveroom/logs.py).
    log_format: str = "text"
    public_url: str | None = None
    # ``Host`` values (``host[:port]``) a QR code's link may be built from when ``public_url`` is
    # unset; empty means the bind address ``host:port`` (and ``localhost:port`` on loopback).
    allowed_hosts: tuple[str, ...] = ()
    # Transport limits (liveroom/http/transport.py): a connection's request headers must arrive
    # within this long of its start or of its previous answer (it also closes idle keep-alive
    # connections), and a request body within this long of its headers (else 408).
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    # An Engine.IO session (websocket or polling) that has not completed the Socket.IO connect
    # this long after opening is closed.
    socket_connect_timeout_s: float = 10.0
    # An ``rtc:watch`` peer connection that has not connected this long after its answer is
    # closed and its ports freed.
    rtc_connect_timeout_s: float = 15.0
    # WebRTC viewers per live room (sub-second video, the relay's CPU per viewer); the rest of
    # the audience watches LL-HLS (liveroom/hls/). 0: everyone watches LL-HLS.
    webrtc_seats: int = 100
    # Simultaneous in-flight HTTP requests (a websocket or a long poll counts for its whole
    # life) per client address and process; past it, 429 too_many_connections. 0 turns it off.
    max_connections_per_address: int = 256
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed; a client's
    # address is otherwise the TCP peer's (liveroom/addresses.py).
    trusted_proxies: tuple[str, ...] = ()
    # Addresses (or networks) exempt from every per-address limit: a load generator's, an
    # office's. Per-connection and per-user limits still apply to them.
    unlimited_addresses: tuple[str, ...] = ()
    # Full garbage collections at most this often, put off while buys are answered (see
    # liveroom/collector.py); 0 leaves them to CPython (which pauses big servers often).
    gc_full_interval_s: float = 300.0
    # An online order unpaid this long is cancelled (its stock returns to the sale); a card
    # charge the provider has not answered this long is given up so the buyer can pay again.
    payment_timeout_s: int = 15 * 60
    charge_timeout_s: int = 2 * 60
    # Set by the supervisor of ``--workers N`` for each worker process (0-based); None alone.
    worker_index: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Build settings from ``LIVEROOM_*`` variables, then apply explicit overrides (flags).

        Overrides whose value is ``None`` are ignored so that unset CLI flags fall back to
        the environment, then to defaults.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        if values.get("demo") and ENV_PREFIX + "OTP_ECHO" not in env:
            values.setdefault("otp_echo", True)
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def edge_port(self) -> int:
        """Where ``serve``'s LL-HLS edges listen."""
        return self.hls_port or self.port + 1

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port out of range: {self.port}")
        if self.workers < 1:
            raise SettingsError("workers must be at least 1")
        if not 0 <= self.hls_edges <= 64:
            raise SettingsError("hls_edges must be from 0 to 64")
        if not 0 <= self.hls_port <= 65535:
            raise SettingsError(f"hls_port out of range: {self.hls_port}")
        if self.hls_edges and self.edge_port in (self.port, 65536):
            raise SettingsError("hls_port must differ from port")
        if self.secret is not None and len(self.secret.encode()) < 32:
            # HS256 tokens want a key at least as long as the hash (RFC 7518, 3.2).
            raise SettingsError(f"{ENV_PREFIX}SECRET must be at least 32 bytes")
        if self.otp_codes_per_address_per_hour < 0:
            raise SettingsError(f"{ENV_PREFIX}OTP_CODES_PER_ADDRESS_PER_HOUR must be 0 (no "
                                "limit) or positive")
        if self.token_ttl_s <= 0:
            raise SettingsError("token_ttl_s must be positive")
        if self.redis_url is not None:
            try:
                parse_redis_url(self.redis_url)
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}REDIS_URL: {exc}") from None
        if self.node_name is not None and not (
                0 < len(self.node_name) <= 64 and self.node_name.isprintable()):
            raise SettingsError(f"{ENV_PREFIX}NODE_NAME must be 1 to 64 printable characters")
        if not 1 <= self.redis_wait_timeout_ms <= 60_000:
            raise SettingsError(f"{ENV_PREFIX}REDIS_WAIT_TIMEOUT_MS must be from 1 to 60000")
        if self.database_url is not None:
            try:
                check_database_url(self.database_url)
            except DatabaseUrlError as exc:
                raise SettingsError(f"{ENV_PREFIX}DATABASE_URL / --database-url: "
                                    f"{exc.reason} ({exc.url})") from None
        if self.database_url is not None and (self.secret is None
                                              or self.signing_key_file is None):
            # Each node would make its own secret and key in its own data dir: tokens and
            # certificates of one node would not verify on another.
            missing = [name for name, value in (("SECRET", self.secret),
                                                ("SIGNING_KEY_FILE", self.signing_key_file))
                       if value is None]
            raise SettingsError(
                "with a database URL every node must share its keys: set "
                + " and ".join(ENV_PREFIX + name for name in missing)
                + " (the same token secret of 32+ bytes and Ed25519 PEM private key file on "
                "every node)")
        if self.gc_full_interval_s < 0:
            raise SettingsError("gc_full_interval_s must be 0 (CPython decides) or positive")
        if self.payment_timeout_s <= 0 or self.charge_timeout_s <= 0:
            raise SettingsError("payment_timeout_s and charge_timeout_s must be positive")
        if not 1 <= self.buy_batch_max_ms <= 1000:
            raise SettingsError(f"{ENV_PREFIX}BUY_BATCH_MAX_MS must be from 1 to 1000")
        if not 1 <= self.buy_batch_target <= 512:
            raise SettingsError(f"{ENV_PREFIX}BUY_BATCH_TARGET must be from 1 to 512")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"log_format must be text or json, not {self.log_format!r}")
        self._validate_transport()
        for name in ("trusted_proxies", "unlimited_addresses"):
            try:
                parse_networks(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
        self._validate_ice()

    def _validate_transport(self) -> None:
        for name in ("http_header_timeout_s", "http_body_timeout_s", "socket_connect_timeout_s",
                     "rtc_connect_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be from above 0 to 3600 "
                                    f"seconds, not {value}")
        if not 0 <= self.webrtc_seats <= 100_000:
            raise SettingsError(f"{ENV_PREFIX}WEBRTC_SEATS must be from 0 to 100000, "
                                f"not {self.webrtc_seats}")
        if self.max_connections_per_address < 0:
            raise SettingsError(f"{ENV_PREFIX}MAX_CONNECTIONS_PER_ADDRESS must be 0 (off) or "
                                "positive")
        if self.public_url is not None and not _PUBLIC_URL.match(self.public_url):
            raise SettingsError(f"{ENV_PREFIX}PUBLIC_URL must be http(s)://host[:port][/path], "
                                f"not {self.public_url!r}")
        for entry in self.allowed_hosts:
            if not _HOST_ENTRY.match(entry):
                raise SettingsError(f"{ENV_PREFIX}ALLOWED_HOSTS: {entry!r} is not host[:port] "
                                    "(no scheme, no path)")

    def _validate_ice(self) -> None:
        """The one check of the ICE settings (the media relay builds on settings that passed
        it), refused here, before anything starts."""
        if self.turn_ttl_s <= 0:
            raise SettingsError(f"{ENV_PREFIX}TURN_TTL_S must be positive")
        static = self.turn_username is not None or self.turn_password is not None
        if self.turn_secret and static:
            # A TURN server checks one kind: coturn's use-auth-secret turns the static users off.
            raise SettingsError(
                f"{ENV_PREFIX}TURN_SECRET conflicts with {ENV_PREFIX}TURN_USERNAME and "
                f"{ENV_PREFIX}TURN_PASSWORD: set the shared secret alone (short-lived "
                "credentials per user) or the static pair alone")
        for url in self.ice_servers:
            if not url.startswith(ICE_SCHEMES):
                raise SettingsError(
                    f"{ENV_PREFIX}ICE_SERVERS: {url!r} must start with stun:, stuns:, turn: or "
                    "turns:")
            if url.startswith(TURN_SCHEMES) and not (
                    self.turn_secret or (self.turn_username and self.turn_password)):
                raise SettingsError(
                    f"{ENV_PREFIX}ICE_SERVERS: the TURN server {url!r} needs "
                    f"{ENV_PREFIX}TURN_SECRET (or {ENV_PREFIX}TURN_USERNAME and "
                    f"{ENV_PREFIX}TURN_PASSWORD)")

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret"

    @property
    def node(self) -> str:
        """The node's name in metrics: ``node_name``, else the host name."""
        return self.node_name or socket.gethostname()

    def resolve_secret(self) -> bytes:
        """The token-signing secret: ``LIVEROOM_SECRET``, else a file made on first start."""
        if self.secret:
            return self.secret.encode()
        path = self.secret_path
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48).encode()
        # O_EXCL: two workers starting together must agree on one secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
        return value


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    annotation = str(type_name)
    try:
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            return float(raw)
        if annotation.startswith("bool"):
            return _parse_bool(raw)
        if annotation.startswith("Path"):
            return Path(raw)
        if annotation.startswith("tuple"):
            return _parse_list(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
    return raw or None
