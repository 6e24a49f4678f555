"""Buyer accounts: one per phone number, proven with a one-time code sent by SMS.

Guests (``POST /api/session``) may watch and chat; buying needs an account, because a flash
sale's per-person limit is only as good as what a person cannot have many of. A phone number is
such a thing; a guest session is not.

An account's user id is derived from the phone and the server secret (``account_id``), so the
same phone is the same buyer on every node and in ``liveroom token --phone`` without a lookup.
The phone itself never leaves the server: tokens carry ``phone_verified``, not the number.

Codes: six digits, kept only as an HMAC in Redis for ``CODE_TTL_S``, ``MAX_TRIES`` guesses each;
a phone may ask again after ``RESEND_AFTER_S`` and at most ``MAX_CODES_PER_PHONE_PER_HOUR``
times an hour; a client address at most ``codes_per_address_per_hour`` times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from . import keys
from .addresses import ClientAddresses
from .exceptions import CodeRefused, Forbidden, InvalidInput, InvalidPhone, RateLimited
from .identity import Role, User, validate_name

__all__ = [
    "CODE_TTL_S",
    "MAX_TRIES",
    "AccountService",
    "CodeSent",
    "SandboxSms",
    "SmsSender",
    "account_id",
    "normalize_phone",
]

log = logging.getLogger("liveroom.accounts")

CODE_TTL_S = 300
RESEND_AFTER_S = 30
MAX_TRIES = 5
MAX_CODES_PER_PHONE_PER_HOUR = 5
MAX_TEST_BUYERS = 10_000
GUEST_LINK_S = 24 * 3600
DEFAULT_BUYER_NAME = "Buyer"
# E.164: a country code and subscriber number, 8 to 15 digits in all.
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().\-\u00a0]")
_TEST_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
HOUR_MS = 3_600_000


def normalize_phone(raw: object) -> str:
    """``+<digits>`` (E.164) from what a person types: spaces, dashes, dots and brackets are
    dropped, a leading ``00`` reads as ``+``. No national numbers: without a country code the
    same digits are different phones in different countries."""
    if not isinstance(raw, str) or len(raw) > 32:
        raise InvalidPhone()
    phone = _PHONE_PUNCTUATION.sub("", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.match(phone):
        raise InvalidPhone()
    return phone


def account_id(secret: bytes, phone: str) -> str:
    """The user id of the account of ``phone`` (already normalised)."""
    digest = hmac.new(secret, b"liveroom account:" + phone.encode(), hashlib.sha256).digest()
    return "b_" + base64.urlsafe_b64encode(digest[:12]).decode()


def buyer(secret: bytes, phone: str, name: str) -> User:
    return User(id=account_id(secret, phone), name=validate_name(name), role=Role.VIEWER,
                phone_verified=True)


class SmsSender(Protocol):
    """Where codes go. The sandbox logs them; a real gateway (an SMS provider's API) plugs in
    here and raises on failure, which the caller answers as an outage."""

    async def send(self, phone: str, text: str) -> None: ...


class SandboxSms:
    """Writes each message to the server log instead of sending it (development and tests)."""

    async def send(self, phone: str, text: str) -> None:
        log.info("sandbox SMS to %s: %s", phone, text)


@dataclass(frozen=True, slots=True)
class CodeSent:
    phone: str
    expires_in_s: int
    resend_after_s: int
    # Only with LIVEROOM_OTP_ECHO (demo, tests, load tests): the code itself.
    code: str | None

    def public(self) -> dict[str, object]:
        body: dict[str, object] = {"phone": self.phone, "expires_in_s": self.expires_in_s,
                                   "resend_after_s": self.resend_after_s}
        if self.code is not None:
            body["code"] = self.code
        return body


class AccountService:
    def __init__(self, redis: aioredis.Redis, secret: bytes, sms: SmsSender,
                 now_ms: Callable[[], int], *, echo_codes: bool = False,
                 addresses: ClientAddresses | None = None,
                 codes_per_address_per_hour: int = 20,
                 guest_sessions_per_address_per_min: int = 30) -> None:
        self._redis = redis
        self._secret = secret
        self._sms = sms
        self._now_ms = now_ms
        self.echo_codes = echo_codes
        self._addresses = addresses if addresses is not None else ClientAddresses()
        self._per_address = codes_per_address_per_hour
        self._sessions_per_address = guest_sessions_per_address_per_min

    async def admit_guest_session(self, address: str) -> None:
        """Count a new guest session from ``address``; RateLimited past the per-minute limit.
        Guest sessions are free, but not free to mint by the thousand: chat limits, slow mode
        and mutes count per session."""
        if not self._sessions_per_address or self._addresses.unlimited(address):
            return
        minute = self._now_ms() // 60_000
        key = keys.guest_sessions_minute(address, minute)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        if int(count) > self._sessions_per_address:
            raise RateLimited("too many new guest sessions from this address; try again in a "
                              "minute", retry_after_ms=60_000 - self._now_ms() % 60_000)

    def _code_mac(self, phone: str, code: str) -> bytes:
        return hmac.new(self._secret, f"liveroom otp:{phone}:{code}".encode(),
                        hashlib.sha256).digest()

    async def request_code(self, raw_phone: object, address: str) -> CodeSent:
        """Send a new code to the phone (replacing any earlier one)."""
        phone = normalize_phone(raw_phone)
        now = self._now_ms()
        hour = now // HOUR_MS
        hour_keys = [keys.otp_phone_hour(phone, hour), keys.otp_address_hour(address, hour)]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.otp_last_sent(phone))
            for key in hour_keys:
                pipe.get(key)
            last_sent, phone_count, address_count = await pipe.execute()
        self._check_code_limits(now, last_sent, int(phone_count or 0), int(address_count or 0),
                                address)
        # Swapped atomically: of two requests at once, the second sees the first's time.
        previous: bytes | None = await self._redis.set(  # type: ignore[assignment]
            keys.otp_last_sent(phone), now, get=True, ex=RESEND_AFTER_S * 10)
        if previous != last_sent:
            self._check_code_limits(now, previous, 0, 0, address)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in hour_keys:
                pipe.incr(key)
                pipe.expire(key, 3600, nx=True)
            await pipe.execute()
        code = f"{secrets.randbelow(1_000_000):06d}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.otp_code(phone))
            pipe.hset(keys.otp_code(phone), mapping={"mac": self._code_mac(phone, code),
                                                     "tries": 0})
            pipe.expire(keys.otp_code(phone), CODE_TTL_S)
            await pipe.execute()
        await self._sms.send(phone, f"liveroom: your code is {code}. It expires in "
                                    f"{CODE_TTL_S // 60} minutes. Never share it.")
        return CodeSent(phone, CODE_TTL_S, RESEND_AFTER_S, code if self.echo_codes else None)

    def _check_code_limits(self, now: int, last_sent: bytes | None, phone_count: int,
                           address_count: int, address: str) -> None:
        wait_ms = int(last_sent) + RESEND_AFTER_S * 1000 - now if last_sent else 0
        if wait_ms > 0:
            raise RateLimited("a code was just sent to this phone; wait before asking again",
                              retry_after_ms=wait_ms)
        until_next_hour = HOUR_MS - now % HOUR_MS
        if phone_count >= MAX_CODES_PER_PHONE_PER_HOUR:
            raise RateLimited("too many codes for this phone this hour",
                              retry_after_ms=until_next_hour)
        if (self._per_address and address_count >= self._per_address
                and not self._addresses.unlimited(address)):
            raise RateLimited("too many codes asked from this address this hour",
                              retry_after_ms=until_next_hour)

    async def verify(self, raw_phone: object, raw_code: object, name: object = None) -> User:
        """The buyer account of the phone, if ``raw_code`` is its current code. Every guess
        counts, right or wrong; the code is used up by the right one or by the last try."""
        phone = normalize_phone(raw_phone)
        display = validate_name(name) if name is not None else DEFAULT_BUYER_NAME
        if not isinstance(raw_code, str) or not raw_code.isascii() or len(raw_code) > 16:
            raise CodeRefused("wrong")
        code_key = keys.otp_code(phone)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(code_key, "tries", 1)
            pipe.hget(code_key, "mac")
            tries, mac = await pipe.execute()
        if mac is None:
            # HINCRBY made a stray hash of a code that had expired or never was.
            await self._redis.delete(code_key)
            raise CodeRefused("expired")
        if int(tries) > MAX_TRIES:
            await self._redis.delete(code_key)
            raise CodeRefused("exhausted")
        if not hmac.compare_digest(mac, self._code_mac(phone, raw_code.strip())):
            left = MAX_TRIES - int(tries)
            if left <= 0:
                await self._redis.delete(code_key)
                raise CodeRefused("exhausted")
            raise CodeRefused("wrong", tries_left=left)
        await self._redis.delete(code_key)
        user = buyer(self._secret, phone, display)
        await self._redis.hset(keys.account(user.id), mapping={
            "phone": phone, "verified_at": self._now_ms()})
        return user

    async def remember_guest(self, account: User, guest: User) -> None:
        """``account`` was signed in from the guest session ``guest`` (the same person): rooms
        count them as one viewer for a day."""
        await self._redis.set(keys.account_guest(account.id), guest.id, ex=GUEST_LINK_S)

    def test_buyers(self, count: int, prefix: str) -> list[tuple[User, str]]:
        """``count`` verified buyers with made-up phones for load tests (only while codes are
        echoed, which no production server does): ``+999`` numbers, a range no country uses,
        the same for the same prefix and index, so a rerun reuses its accounts."""
        if not 1 <= count <= MAX_TEST_BUYERS:
            raise InvalidInput(f"count must be from 1 to {MAX_TEST_BUYERS}")
        if not self.echo_codes:
            raise Forbidden("test buyers exist only while LIVEROOM_OTP_ECHO=1")
        if not _TEST_PREFIX.match(prefix):
            raise InvalidInput("prefix must be 1-24 characters of A-Z a-z 0-9 _ -")
        buyers = []
        for index in range(count):
            seed = hashlib.sha256(f"{prefix}:{index}".encode()).digest()
            phone = "+999" + f"{int.from_bytes(seed[:8], 'big') % 10**11:011d}"
            buyers.append((buyer(self._secret, phone, f"{prefix}-{index}"), phone))
        return buyers
