"""Buyer accounts: a one-time code sent to a phone makes a buyer token; one account per phone,
however many times it signs in; codes that are guessed, old or asked for too often are refused;
guest sessions cannot be minted by the thousand."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from liveroom.accounts import CODE_TTL_S, MAX_TRIES, AccountService, SandboxSms, normalize_phone
from liveroom.addresses import ClientAddresses, parse_networks
from liveroom.exceptions import CodeRefused, InvalidPhone, RateLimited
from tests.clock import Clock
from tests.server_harness import live_server

SECRET = b"accounts-test-secret-0123456789abcdef"


class Outbox:
    """An SMS gateway that keeps what it was asked to send (the sandbox only logs)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))

    def last_code(self) -> str:
        return self.sent[-1][1].split("code is ")[1][:6]


def service(redis: aioredis.Redis, clock: Clock, outbox: Outbox, **kwargs: object
            ) -> AccountService:
    return AccountService(redis, SECRET, outbox, clock, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("typed", "stored"), [
    ("+86 138 0013 8000", "+8613800138000"),
    ("0086-138-0013-8000", "+8613800138000"),
    ("+1 (415) 555.0100", "+14155550100"),
])
def test_phones_are_stored_in_one_international_form(typed: str, stored: str) -> None:
    assert normalize_phone(typed) == stored


@pytest.mark.parametrize("typed", [
    "13800138000", "+0123456789", "+86", "+86 138 0013 8000 ext 9", 8613800138000, "",
    "+" + "1" * 20,
    "+\uff18\uff16\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10",
])
def test_numbers_that_are_not_international_phones_are_refused(typed: object) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(typed)


async def test_a_code_signs_in_the_same_account_for_the_same_phone(
        redis: aioredis.Redis) -> None:
    clock, outbox = Clock(), Outbox()
    accounts = service(redis, clock, outbox)
    sent = await accounts.request_code("+86 138 0013 8000", "198.51.100.7")
    assert sent.code is None, "codes are never in the answer unless echo is on"
    assert outbox.sent[0][0] == "+8613800138000"
    first = await accounts.verify("+8613800138000", outbox.last_code(), "Wang Fang")
    assert first.phone_verified
    assert first.name == "Wang Fang"
    with pytest.raises(CodeRefused) as used:
        await accounts.verify("+8613800138000", outbox.last_code())
    assert used.value.code == "otp_expired", "a code signs in once"
    clock.advance(31_000)
    await accounts.request_code("+8613800138000", "198.51.100.7")
    again = await accounts.verify("0086 138 0013 8000", outbox.last_code(), "Fang")
    assert again.id == first.id, "one account per phone"
    assert again.id != (await _other_phone(accounts, outbox, clock)).id


async def _other_phone(accounts: AccountService, outbox: Outbox, clock: Clock):
    await accounts.request_code("+8613900139000", "198.51.100.7")
    return await accounts.verify("+8613900139000", outbox.last_code())


async def test_guesses_are_counted_and_the_last_one_burns_the_code(
        redis: aioredis.Redis) -> None:
    clock, outbox = Clock(), Outbox()
    accounts = service(redis, clock, outbox)
    await accounts.request_code("+8613800138000", "198.51.100.7")
    right = outbox.last_code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for left in range(MAX_TRIES - 1, 0, -1):
        with pytest.raises(CodeRefused) as refused:
            await accounts.verify("+8613800138000", wrong)
        assert (refused.value.code, refused.value.tries_left) == ("otp_wrong", left)
    with pytest.raises(CodeRefused) as last:
        await accounts.verify("+8613800138000", wrong)
    assert last.value.code == "otp_exhausted"
    with pytest.raises(CodeRefused) as after:
        await accounts.verify("+8613800138000", right)
    assert after.value.code == "otp_expired", "the right code no longer works either"


async def test_a_code_expires(redis: aioredis.Redis) -> None:
    clock, outbox = Clock(), Outbox()
    accounts = service(redis, clock, outbox)
    await accounts.request_code("+8613800138000", "198.51.100.7")
    assert 0 < await redis.ttl("otp:+8613800138000:code") <= CODE_TTL_S
    await redis.delete("otp:+8613800138000:code")  # what Redis does when the TTL runs out
    with pytest.raises(CodeRefused) as refused:
        await accounts.verify("+8613800138000", outbox.last_code())
    assert refused.value.code == "otp_expired"
    assert not await redis.exists("otp:+8613800138000:code"), "no stray record is left"


async def test_codes_are_rate_limited_per_phone_and_per_address(redis: aioredis.Redis) -> None:
    clock, outbox = Clock(), Outbox()
    accounts = service(redis, clock, outbox, codes_per_address_per_hour=3)
    await accounts.request_code("+8613800138000", "198.51.100.7")
    with pytest.raises(RateLimited) as again:
        await accounts.request_code("+8613800138000", "198.51.100.8")
    assert 0 < again.value.retry_after_ms <= 30_000
    await accounts.request_code("+8613900139000", "198.51.100.7")
    await accounts.request_code("+8613700137000", "198.51.100.7")
    with pytest.raises(RateLimited, match="this address"):
        await accounts.request_code("+8613600136000", "198.51.100.7")
    await accounts.request_code("+8613600136000", "198.51.100.9")  # another address is fine
    for n in range(4):  # five codes an hour to one phone, wherever they are asked from
        clock.advance(31_000)
        await accounts.request_code("+8613800138000", f"198.51.100.{20 + n}")
    sent_before = len(outbox.sent)
    clock.advance(31_000)
    with pytest.raises(RateLimited, match="this phone this hour"):
        await accounts.request_code("+8613800138000", "198.51.100.30")
    assert len(outbox.sent) == sent_before, "a refused request sends nothing"
    # An exempt address (a load generator) has no per-address limit.
    exempt = service(redis, clock, outbox, codes_per_address_per_hour=3,
                     addresses=ClientAddresses(unlimited=parse_networks(["198.51.100.7"])))
    clock.advance(3_600_000)
    for n in range(5):
        await exempt.request_code(f"+861350013500{n}", "198.51.100.7")


async def test_the_sandbox_writes_the_code_to_the_log(
        redis: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    accounts = AccountService(redis, SECRET, SandboxSms(), Clock())
    with caplog.at_level(logging.INFO, logger="liveroom.accounts"):
        await accounts.request_code("+8613800138000", "198.51.100.7")
    assert any("sandbox SMS to +8613800138000: liveroom: your code is" in r.getMessage()
               for r in caplog.records)


async def test_over_http_a_guest_becomes_a_buyer_and_test_buyers_need_echo_and_an_admin(
        redis: aioredis.Redis, redis_url: str, data_dir: Path) -> None:
    async with live_server(redis_url, data_dir) as server:
        status, guest = await server.request("POST", "/api/session", json={"name": "Fang"})
        assert status == 201
        assert guest["user"]["phone_verified"] is False
        status, sent = await server.request("POST", "/api/accounts/otp",
                                            json={"phone": "+86 138 0013 8000"})
        assert status == 202
        assert sent["phone"] == "+8613800138000"
        assert len(sent["code"]) == 6
        status, bad = await server.request("POST", "/api/accounts/verify", json={
            "phone": "+8613800138000", "code": "not it"})
        assert (status, bad["error"]["code"]) == (401, "otp_wrong")
        status, signed = await server.request("POST", "/api/accounts/verify", guest["token"], {
            "phone": "+8613800138000", "code": sent["code"], "name": "Fang"})
        assert status == 200, signed
        assert signed["user"]["phone_verified"] is True
        status, me = await server.request("GET", "/api/me", signed["token"])
        assert me["user"]["id"] == signed["user"]["id"]
        status, body = await server.request("POST", "/api/accounts/otp", json={"phone": "12"})
        assert (status, body["error"]["code"]) == (400, "invalid_phone")

        admin = server.token("admin", "Root")
        status, body = await server.request("POST", "/api/accounts/test-buyers",
                                            server.token("anchor", "Mei"), {"count": 2})
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, minted = await server.request("POST", "/api/accounts/test-buyers", admin,
                                              {"count": 3, "prefix": "lt"})
        assert status == 201
        assert len(minted["buyers"]) == 3
        assert len({b["user"]["id"] for b in minted["buyers"]}) == 3
        assert all(b["phone"].startswith("+999") and b["user"]["phone_verified"]
                   for b in minted["buyers"])
        _, again = await server.request("POST", "/api/accounts/test-buyers", admin,
                                        {"count": 3, "prefix": "lt"})
        assert [b["user"]["id"] for b in again["buyers"]] == \
            [b["user"]["id"] for b in minted["buyers"]], "the same prefix, the same accounts"
    async with live_server(redis_url, data_dir, otp_echo=False) as quiet:
        status, sent = await quiet.request("POST", "/api/accounts/otp",
                                           json={"phone": "+8613900139000"})
        assert status == 202
        assert "code" not in sent
        status, body = await quiet.request("POST", "/api/accounts/test-buyers",
                                           quiet.token("admin", "Root"), {"count": 1})
        assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_guest_sessions_are_limited_per_address(
        redis: aioredis.Redis, redis_url: str, data_dir: Path) -> None:
    """One client minted 1,000 guest identities in 0.2 s; now an address gets a few a minute."""
    # A clock that stands still: the limit counts per clock minute, and on a busy machine the 50
    # requests could straddle a minute's end on the wall clock (two windows, 31+ admitted).
    async with live_server(redis_url, data_dir, clock=Clock(),
                           guest_sessions_per_address_per_min=30) as server:
        answers = await asyncio.gather(*(
            server.request("POST", "/api/session", json={"name": f"g{i}"}) for i in range(50)))
        statuses = sorted(status for status, _ in answers)
        assert statuses.count(201) == 30
        refused = [body for status, body in answers if status == 429]
        assert len(refused) == 20
        assert all(body["error"]["code"] == "rate_limited" for body in refused)


async def test_the_cli_mints_the_same_account_as_the_code(
        redis: aioredis.Redis, redis_url: str, data_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from liveroom.cli import main

    async with live_server(redis_url, data_dir) as server:
        _, sent = await server.request("POST", "/api/accounts/otp",
                                       json={"phone": "+8613800138000"})
        _, signed = await server.request("POST", "/api/accounts/verify", json={
            "phone": "+8613800138000", "code": sent["code"]})
        # The harness's secret, as the operator's LIVEROOM_SECRET.
        secret_file = data_dir / "secret"
        secret_file.write_text(server.settings.secret or "")
        assert main(["token", "--role", "viewer", "--name", "Fang", "--phone",
                     "+86 138 0013 8000", "--data-dir", str(data_dir)]) == 0
        token = capsys.readouterr().out.strip()
        status, me = await server.request("GET", "/api/me", token)
        assert status == 200
        assert me["user"]["id"] == signed["user"]["id"]
        assert me["user"]["phone_verified"] is True
        assert main(["token", "--role", "viewer", "--name", "Fang", "--phone", "12345",
                     "--data-dir", str(data_dir)]) == 2
