"""Offline certificate verifier: ``python -m trustbadges.verify CERT.json --public-key KEY.pem``.

Needs only the standard library and ``cryptography`` (no server, no database). ``CERT.json``
is either a certificate document or a whole ``GET /api/certificates/{id}`` answer, whose signed
``revocation`` record, if any, is honoured. Prints ``VALID ...`` (exit 0) or
``INVALID <reason>`` (exit 1); unreadable input exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._document import certificate_problem, key_id_for

__all__ = ["main", "verify_file"]


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers could pick different copies: refuse rather than guess.
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _load_public_key(path: Path) -> Ed25519PublicKey:
    key = load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify_file(
    certificate_path: Path, public_key: Ed25519PublicKey, now_ms: int
) -> tuple[str | None, Any]:
    """``(reason or None, certificate document)`` for the file at ``certificate_path``."""
    loaded = json.loads(certificate_path.read_text("utf-8"), object_pairs_hook=_reject_duplicates)
    revocation = None
    if isinstance(loaded, dict) and "signature" not in loaded and "certificate" in loaded:
        revocation = loaded.get("revocation")
        loaded = loaded["certificate"]
    trusted_id = key_id_for(public_key)

    def lookup(key_id: str) -> Ed25519PublicKey | None:
        return public_key if key_id == trusted_id else None

    return certificate_problem(loaded, lookup, now_ms, revocation), loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trustbadges.verify",
        description="Verify a liveroom certificate offline with the platform public key.",
    )
    parser.add_argument("certificate", type=Path, help="certificate JSON file")
    parser.add_argument("--public-key", type=Path, required=True, help="platform key (PEM)")
    parser.add_argument(
        "--at", type=int, default=None, help="check validity at this epoch-ms (default: now)"
    )
    args = parser.parse_args(argv)
    now_ms = time.time_ns() // 1_000_000 if args.at is None else args.at
    try:
        public_key = _load_public_key(args.public_key)
        reason, document = verify_file(args.certificate, public_key, now_ms)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if reason is not None:
        print(f"INVALID {reason}")
        return 1
    subject = ",".join(f"{k}={v}" for k, v in sorted(document["subject"].items()))
    print(f"VALID {document['id']} kind={document['kind']} {subject} key={document['key_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
