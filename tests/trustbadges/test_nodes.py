"""Several nodes on one certificate store: the signing key comes from a PEM file
(``LIVEROOM_SIGNING_KEY_FILE``) instead of each node's data dir, and every public key a node
signed with is kept in the store, so a key rotated out still verifies on every node."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.clock import Clock
from tests.rawdb import StoreLocation, location_url
from trustbadges import CertificateService, KeyStoreError

from .conftest import INSPECTOR, PRODUCT_ID, vault_details


def key_file(path: Path) -> Path:
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def node(tmp_path: Path, name: str, where: StoreLocation, key: Path,
         clock: Clock) -> CertificateService:
    """A node with a data dir of its own (on SQLite, processes sharing the data dir's file)."""
    data_dir = where if isinstance(where, Path) else tmp_path / name
    data_dir.mkdir(exist_ok=True)
    return CertificateService.open(data_dir, now_ms=clock, database_url=location_url(where),
                                   signing_key_file=key)


async def test_nodes_sharing_a_key_file_verify_each_other_and_survive_a_rotation(
    tmp_path: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    old_key = key_file(tmp_path / "old.pem")
    a = node(tmp_path, "a", cert_location, old_key, clock)
    b = node(tmp_path, "b", cert_location, old_key, clock)
    await a.start()
    await b.start()
    try:
        assert a.public_keys()["active_key_id"] == b.public_keys()["active_key_id"]
        before = await a.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID,
                               details=vault_details())
        assert (await b.get(before.id)).valid

        # Node A is restarted with a new key; B still signs with the old one.
        await a.close()
        a = node(tmp_path, "a", cert_location, key_file(tmp_path / "new.pem"), clock)
        await a.start()
        clock.advance(1000)
        after = await a.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID,
                              details=vault_details())
        assert after.key_id != before.key_id
        for service in (a, b):
            assert (await service.get(before.id)).valid
            assert (await service.get(after.id)).valid
        assert {k["status"] for k in a.public_keys()["keys"]} == {"active", "retired"}
        badges = await b.badges_for(PRODUCT_ID, None, None)
        assert badges[0]["certificate"] == after.id
    finally:
        await a.close()
        await b.close()


async def test_a_certificate_signed_by_a_key_no_node_published_stays_unknown(
    tmp_path: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    a = node(tmp_path, "a", cert_location, key_file(tmp_path / "a.pem"), clock)
    await a.start()
    try:
        cert = await a.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
        foreign = await CertificateService.open(
            tmp_path / "elsewhere", now_ms=clock).issue(
                *INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
        assert a.verify_document(foreign.document).reason == "unknown_key"
        assert (await a.get(cert.id)).valid
    finally:
        await a.close()


def test_a_missing_or_bad_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no such file"):
        CertificateService.open(tmp_path, signing_key_file=tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(KeyStoreError, match="not an unencrypted PEM private key"):
        CertificateService.open(tmp_path, signing_key_file=bad)
