"""Tokens are JWTs anyone holding the secret can check with a stock library, accepted in one
spelling only; display names cannot hide who is speaking."""

from __future__ import annotations

import base64
import hashlib
import hmac

import jwt
import orjson
import pytest

from liveroom.exceptions import InvalidInput
from liveroom.identity import InvalidToken, Role, TokenSigner, User, name_key, validate_name
from tests.clock import Clock

SECRET = b"0123456789abcdef0123456789abcdef"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: dict[str, object], claims: dict[str, object]) -> str:
    """A token built by hand with the right secret: only its shape can be wrong."""
    body = _b64(orjson.dumps(header)) + "." + _b64(orjson.dumps(claims))
    return body + "." + _b64(hmac.new(SECRET, body.encode(), hashlib.sha256).digest())


def test_round_trip_carries_id_name_role_and_phone_verification() -> None:
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=Clock())
    anchor = User(id="u_1", name="Mei", role=Role.ANCHOR)
    buyer = User(id="b_1", name="Lin", role=Role.VIEWER, phone_verified=True)
    assert signer.verify(signer.issue(anchor)) == anchor
    assert signer.verify(signer.issue(buyer)) == buyer


def test_a_stock_jwt_library_reads_the_standard_claims() -> None:
    clock = Clock()
    token = TokenSigner(SECRET, ttl_s=60, now_ms=clock).issue(User("u_1", "Mei", Role.ANCHOR))
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "u_1", "name": "Mei", "role": "anchor",
                      "iat": clock.now // 1000, "exp": clock.now // 1000 + 60}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


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
    header, body, signature = signer.issue(User(id="u_1", name="Mei", role=Role.VIEWER)).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    with pytest.raises(InvalidToken) as info:
        signer.verify(f"{header}.{_b64(orjson.dumps(claims))}.{signature}")
    assert info.value.reason == "bad_signature"


def test_token_from_another_secret_is_refused() -> None:
    other = TokenSigner(b"another-secret-another-secret-another!!", ttl_s=60, now_ms=Clock())
    token = other.issue(User(id="u_1", name="Mei", role=Role.ADMIN))
    with pytest.raises(InvalidToken) as info:
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(token)
    assert info.value.reason == "bad_signature"


def test_one_token_has_one_spelling() -> None:
    signer = TokenSigner(SECRET, ttl_s=60, now_ms=Clock())
    token = signer.issue(User(id="u_1", name="Mei", role=Role.VIEWER))
    header, body, signature = token.split(".")
    # The 43-character signature carries two spare bits: flipping them decodes to the same
    # bytes, and base64 decoders ignore padding and stray characters.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    spare_bits = alphabet[last ^ 1]
    variants = [
        f"{header}.{body}.{signature[:-1]}{spare_bits}",
        token + "=",
        f"{header}.{body}=.{signature}",
        f"{header}.{body}.{signature[:10]}!{signature[10:]}",
        f"{header}.{body}.{signature[:10]}+{signature[11:]}",
        f" {token}",
        token.replace(".", ".\n", 1),
    ]
    for variant in variants:
        with pytest.raises(InvalidToken) as info:
            signer.verify(variant)
        assert info.value.reason == "malformed", variant
    assert signer.verify(token).id == "u_1"


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", None, 42, "x" * 5000, "e30.!!!.e30", "ñ.ñ.ñ",
    "eyJhbGciOiJIUzI1NiJ9.e30.\udcff", "a\x00.b.c",
])
def test_malformed_tokens_are_refused(token: object) -> None:
    with pytest.raises(InvalidToken) as info:
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(token)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(("header", "claims"), [
    ({"alg": "HS256"}, {"sub": "u", "name": "n", "role": "emperor", "iat": 1, "exp": 9**12}),
    ({"alg": "HS256"}, {"sub": "u", "name": "n", "role": "viewer", "iat": 1}),
    ({"alg": "HS256"}, {"sub": "", "name": "n", "role": "viewer", "iat": 1, "exp": 9**12}),
    ({"alg": "HS256"}, {"sub": "u", "name": 5, "role": "viewer", "iat": 1, "exp": 9**12}),
    ({"alg": "HS256"}, {"sub": "u", "name": "n", "role": "viewer", "iat": 1, "exp": "later"}),
    ({"alg": "HS256", "kid": "x"}, {"sub": "u", "name": "n", "role": "viewer", "iat": 1,
                                     "exp": 9**12}),
    ({"alg": "HS512"}, {"sub": "u", "name": "n", "role": "viewer", "iat": 1, "exp": 9**12}),
])
def test_signed_but_wrongly_shaped_tokens_are_malformed(
        header: dict[str, object], claims: dict[str, object]) -> None:
    with pytest.raises(InvalidToken) as info:
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(_signed(header, claims))
    assert info.value.reason in ("malformed", "bad_signature")


def test_alg_none_is_refused() -> None:
    unsigned = (_b64(b'{"alg":"none","typ":"JWT"}') + "."
                + _b64(b'{"sub":"u","name":"n","role":"admin","iat":1,"exp":99999999999}') + ".")
    with pytest.raises(InvalidToken):
        TokenSigner(SECRET, ttl_s=60, now_ms=Clock()).verify(unsigned)


@pytest.mark.parametrize(("raw", "shown"), [
    ("  Mei   Lin ", "Mei Lin"),
    ("\uff2d\uff45\uff49", "Mei"),  # full-width letters fold to ASCII
    ("Me\u200bi", "Mei"),  # zero-width space
    ("\u202eieM", "ieM"),  # right-to-left override
    ("M\u2066e\u2069i\ufeff", "Mei"),  # isolates, byte-order mark
    ("Mei\x07\x1b[31m", "Mei [31m"),  # control characters become spaces
])
def test_names_are_shown_without_invisible_or_reordering_characters(raw: str, shown: str) -> None:
    assert validate_name(raw) == shown


@pytest.mark.parametrize("raw", ["", "   ", "\u200b\u202e", 7, "x" * 41])
def test_unusable_names_are_refused(raw: object) -> None:
    with pytest.raises(InvalidInput):
        validate_name(raw)


def test_names_that_pass_for_each_other_share_a_key() -> None:
    assert name_key("Mei") == name_key("MEI") == name_key("M.e.i")
    assert name_key("Mei") == name_key("\uff2d\uff45\uff49 ")
    assert name_key("Mei") != name_key("Mel")
