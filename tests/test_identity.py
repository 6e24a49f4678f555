from __future__ import annotations

import base64

import orjson
import pytest

from liveroom.identity import InvalidToken, Role, TokenSigner, User
from tests.clock import Clock

SECRET = b"0123456789abcdef0123456789abcdef"


def test_round_trip_carries_id_name_and_role() -> None:
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=Clock())
    user = User(id="u_1", name="Mei", role=Role.ANCHOR)
    assert signer.verify(signer.issue(user)) == user


def test_expired_token_is_refused() -> None:
    clock = Clock()
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=clock)
    token = signer.issue(User(id="u_1", name="Mei", role=Role.VIEWER))
    clock.now += 59_999
    signer.verify(token)
    clock.now += 1
    with pytest.raises(InvalidToken) as info:
        signer.verify(token)
    assert info.value.reason == "expired"
    assert info.value.code == "token_expired"


def test_raising_the_role_breaks_the_signature() -> None:
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=Clock())
    token = signer.issue(User(id="u_1", name="Mei", role=Role.VIEWER))
    body, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    with pytest.raises(InvalidToken) as info:
        signer.verify(forged + "." + signature)
    assert info.value.reason == "bad_signature"


def test_token_from_another_secret_is_refused() -> None:
    other = TokenSigner(b"another-secret-another-secret!!", ttl_s=60, now_ms=Clock())
    token = other.issue(User(id="u_1", name="Mei", role=Role.ADMIN))
    with pytest.raises(InvalidToken) as info:
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(token)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", None, 42, "x" * 5000, "e30.!!!"])
def test_malformed_tokens_are_refused(token: object) -> None:
    with pytest.raises(InvalidToken):
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(token)


def test_signed_garbage_claims_are_malformed() -> None:
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=Clock())
    body = base64.urlsafe_b64encode(b'{"sub":"u","role":"emperor"}').rstrip(b"=")
    import hashlib
    import hmac

    mac = base64.urlsafe_b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(InvalidToken) as info:
        signer.verify((body + b"." + mac).decode())
    assert info.value.reason == "malformed"
