"""Signatures: round trip, tampering with every field, foreign keys, revocation, expiry."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.clock import Clock
from trustbadges import (
    CERTIFICATE_FORMAT,
    CanonicalFormError,
    CertificateService,
    canonical_bytes,
    key_id_for,
)
from trustbadges._document import sign_document

from .conftest import (
    ADMIN,
    ANCHOR_ID,
    DAY_MS,
    INSPECTOR,
    PHONE_ID,
    PRODUCT_ID,
    inspection_details,
    vault_details,
)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    else:
        yield path


def altered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1")
    if value is None:
        return 1
    raise AssertionError(f"unexpected leaf {value!r}")


def set_path(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def get_path(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    target: Any = doc
    for step in path:
        target = target[step]
    return target


async def test_issued_certificate_verifies(service: CertificateService) -> None:
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    checked = service.verify_document(cert.to_dict())
    assert checked.valid
    assert checked.reason is None
    fetched = await service.get(cert.id)
    assert fetched.valid
    assert fetched.certificate == cert.to_dict()
    assert cert.document["format"] == CERTIFICATE_FORMAT
    assert cert.key_id == service.public_keys()["active_key_id"]
    # The document survives a JSON round trip (what a buyer downloads) unchanged and valid.
    assert service.verify_document(json.loads(json.dumps(cert.to_dict()))).valid


@pytest.mark.parametrize("kind", ["vault", "inspection", "refund_no_return"])
async def test_altering_any_signed_field_invalidates(
    service: CertificateService, clock: Clock, kind: str
) -> None:
    if kind == "vault":
        cert = await service.issue(*ADMIN, kind, product_id=PRODUCT_ID, details=vault_details())
    elif kind == "inspection":
        cert = await service.issue(*ADMIN, kind, product_id=PHONE_ID, details=inspection_details())
    else:
        cert = await service.issue(
            *ADMIN,
            kind,
            anchor_id=ANCHOR_ID,
            category="essential_oil",
            details={"valid_from": clock.now, "valid_until": clock.now + 30 * DAY_MS},
        )
    original = cert.to_dict()
    paths = [p for p in leaf_paths(original) if p != ("signature",)]
    assert len(paths) >= 12  # every body field, nested details included
    for path in paths:
        doc = copy.deepcopy(original)
        set_path(doc, path, altered(get_path(doc, path)))
        result = service.verify_document(doc)
        expected = {("format",): "unsupported_format", ("key_id",): "unknown_key"}.get(
            path, "bad_signature"
        )
        assert (result.valid, result.reason) == (False, expected), path

    for name in original:
        doc = copy.deepcopy(original)
        del doc[name]
        assert service.verify_document(doc).valid is False, name
    doc = copy.deepcopy(original)
    doc["note"] = "added later"
    assert service.verify_document(doc).reason == "malformed"
    doc = copy.deepcopy(original)
    doc["signature"] = doc["signature"][:-2] + ("AA" if doc["signature"][-2:] != "AA" else "BA")
    assert service.verify_document(doc).reason == "bad_signature"


async def test_signed_by_another_key_is_invalid(service: CertificateService) -> None:
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    body = {k: v for k, v in cert.to_dict().items() if k != "signature"}
    forger = Ed25519PrivateKey.generate()

    # The forger claims the platform's key id: the signature does not match that key.
    claimed = sign_document(body, forger)
    assert service.verify_document(claimed).reason == "bad_signature"

    # The forger names its own key: no such platform key.
    own = sign_document({**body, "key_id": key_id_for(forger.public_key())}, forger)
    assert service.verify_document(own).reason == "unknown_key"


async def test_revoked_and_expired_are_invalid_with_reason(
    service: CertificateService, clock: Clock
) -> None:
    cert = await service.issue(
        *INSPECTOR,
        "vault",
        product_id=PRODUCT_ID,
        details=vault_details(),
        expires_at=clock.now + DAY_MS,
    )
    assert (await service.get(cert.id)).valid

    clock.advance(DAY_MS - 1)
    assert (await service.get(cert.id)).valid
    clock.advance(1)  # expires_at is exclusive: expired from that millisecond on
    expired = await service.get(cert.id)
    assert (expired.valid, expired.reason) == (False, "expired")

    other = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    revoked = await service.revoke(*INSPECTOR, other.id, "photos did not match the item")
    assert (revoked.valid, revoked.reason) == (False, "revoked")
    assert revoked.revocation is not None
    assert revoked.revocation["reason"] == "photos did not match the item"
    # The revocation record is itself signed: the certificate alone still checks out offline,
    # together with its revocation it does not.
    assert service.verify_document(other.to_dict()).valid
    assert service.verify_document(other.to_dict(), revocation=revoked.revocation).reason == (
        "revoked"
    )
    # A revocation record cannot be replayed against another certificate.
    third = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    assert service.verify_document(third.to_dict(), revocation=revoked.revocation).valid


async def test_refund_no_return_not_yet_valid_then_valid_then_expired(
    service: CertificateService, clock: Clock
) -> None:
    start = clock.now + DAY_MS
    cert = await service.issue(
        *ADMIN,
        "refund_no_return",
        anchor_id=ANCHOR_ID,
        category="essential_oil",
        details={"valid_from": start, "valid_until": start + DAY_MS},
    )
    assert (await service.get(cert.id)).reason == "not_yet_valid"
    clock.now = start
    assert (await service.get(cert.id)).valid
    clock.now = start + DAY_MS
    assert (await service.get(cert.id)).reason == "expired"


def test_canonical_form_is_sorted_compact_utf8_and_refuses_floats() -> None:
    value = {"b": [1, "é", None, True], "a": {"z": -3, "A": 'x\n"y"'}}
    assert canonical_bytes(value) == (
        '{"a":{"A":"x\\n\\"y\\"","z":-3},"b":[1,"é",null,true]}'.encode()
    )
    for bad in ({"w": 1.5}, {"n": 2**53}, {"s": "\ud800"}, {"k\u00e9": 1}, {1: 2}):
        with pytest.raises(CanonicalFormError):
            canonical_bytes(bad)
    assert canonical_bytes({"n": 2**53 - 1}) == b'{"n":9007199254740991}'
