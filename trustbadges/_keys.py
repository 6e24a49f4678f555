"""The platform's Ed25519 keys, kept in the data dir.

``<data_dir>/platform_ed25519.pem`` holds the active private key (PKCS#8 PEM, mode 0600).
``<data_dir>/retired_keys/<key_id>.pem`` holds the public keys of keys rotated out: certificates
signed with them stay verifiable because every certificate names the key id it was signed with.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from ._document import b64url_encode, key_id_for
from .exceptions import KeyStoreError

__all__ = ["KEY_FILE", "RETIRED_DIR", "KeyRing", "public_key_info", "rotate_platform_key"]

KEY_FILE = "platform_ed25519.pem"
RETIRED_DIR = "retired_keys"


def public_key_info(public_key: Ed25519PublicKey, status: str) -> dict[str, Any]:
    return {
        "key_id": key_id_for(public_key),
        "algorithm": "Ed25519",
        "status": status,
        "public_key": b64url_encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        "public_key_pem": public_key.public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
    }


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _publish_exclusively(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` only if it does not exist yet; True if this call created it.

    The bytes go to a private temporary file first (O_EXCL) and are then hard-linked into
    place: ``link`` fails if the name exists, so two processes starting together agree on one
    key and neither can ever read a half-written file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(str(path), f"not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(str(path), "not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The active signing key plus every public key whose signatures are still trusted."""

    signing_key: Ed25519PrivateKey
    retired: dict[str, Ed25519PublicKey]

    @property
    def active_key_id(self) -> str:
        return key_id_for(self.signing_key.public_key())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> KeyRing:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / KEY_FILE
        if not path.exists():
            _publish_exclusively(path, _private_pem(Ed25519PrivateKey.generate()), 0o600)
        signing_key = _load_private(path)
        retired: dict[str, Ed25519PublicKey] = {}
        retired_dir = data_dir / RETIRED_DIR
        if retired_dir.is_dir():
            for pem in sorted(retired_dir.glob("k_*.pem")):
                try:
                    public = load_pem_public_key(pem.read_bytes())
                except ValueError as exc:
                    raise KeyStoreError(str(pem), f"not a PEM public key ({exc})") from None
                if not isinstance(public, Ed25519PublicKey) or key_id_for(public) != pem.stem:
                    raise KeyStoreError(str(pem), "not the Ed25519 key its name says")
                retired[pem.stem] = public
        return cls(signing_key=signing_key, retired=retired)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        """The key of ``path`` (``LIVEROOM_SIGNING_KEY_FILE``: the same on every node); the
        public keys it retired come from the store (``CertificateService.start``)."""
        if not path.is_file():
            raise KeyStoreError(str(path), "no such file (an Ed25519 PEM private key)")
        return cls(signing_key=_load_private(path), retired={})

    def trust(self, public_pems: dict[str, str]) -> None:
        """Trust the public keys ``{key_id: PEM}`` (keys other nodes sign, or signed with
        before a rotation) besides the active one."""
        for key_id, pem in public_pems.items():
            if key_id == self.active_key_id or key_id in self.retired:
                continue
            public = load_pem_public_key(pem.encode("ascii"))
            if isinstance(public, Ed25519PublicKey) and key_id_for(public) == key_id:
                self.retired[key_id] = public

    def lookup(self, key_id: str) -> Ed25519PublicKey | None:
        if key_id == self.active_key_id:
            return self.signing_key.public_key()
        return self.retired.get(key_id)

    def public_keys(self) -> dict[str, Any]:
        """JSON-ready: what ``GET /api/certificates/keys`` publishes."""
        keys = [public_key_info(self.signing_key.public_key(), "active")]
        keys += [public_key_info(self.retired[k], "retired") for k in sorted(self.retired)]
        return {"active_key_id": self.active_key_id, "keys": keys}


def rotate_platform_key(data_dir: Path) -> str:
    """Retire the active key (its public half stays trusted) and make a new one; new key id.

    Running processes keep signing with the key they loaded until restarted; their
    certificates stay valid because the retired public key is still trusted everywhere.
    """
    path = data_dir / KEY_FILE
    old = _load_private(path)
    retired_dir = data_dir / RETIRED_DIR
    retired_dir.mkdir(exist_ok=True)
    old_public = old.public_key()
    _publish_exclusively(
        retired_dir / f"{key_id_for(old_public)}.pem",
        old_public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )
    new = Ed25519PrivateKey.generate()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_private_pem(new))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key_id_for(new.public_key())
