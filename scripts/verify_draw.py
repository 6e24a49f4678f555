#!/usr/bin/env python3
"""Check a liveroom lucky draw offline:
``python scripts/verify_draw.py DRAW.json --public-key KEY.pem``.

``DRAW.json`` is a saved ``GET /api/lucky-bags/{id}`` answer (after the draw), or an object
``{"commitment": ..., "draw": ...}`` holding the two signed statements. ``KEY.pem`` is the
platform's Ed25519 public key (``GET /api/certificates/keys``), pinned beforehand.

This file stands alone: the standard library and ``cryptography``, nothing from liveroom, so
anyone can read all of it. It follows docs/verification.md ("Lucky draws") step by step and
prints ``VALID lb_... winners=a,b`` (exit 0) or ``INVALID <reason>`` (exit 1); an unreadable
file exits 2. Reasons: ``malformed``, ``unsupported_format``, ``unknown_key``,
``bad_signature``, ``not_the_same_draw``, ``seed_mismatch``, ``entries_mismatch``,
``winners_mismatch``, ``drawn_too_early``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

COMMITMENT_FORMAT = "liveroom.lucky.commitment.v1"
DRAW_FORMAT = "liveroom.lucky.draw.v1"
COMMITMENT_FIELDS = {"format", "lucky_bag", "room", "anchor", "product", "title", "winners",
                     "units_each", "condition", "announced_at", "draw_at", "seed_sha256",
                     "key_id", "signature"}
DRAW_FIELDS = {"format", "lucky_bag", "seed_sha256", "seed", "entries", "entries_sha256",
               "winners", "closed_at", "key_id", "signature"}
SPACE = 1 << 256


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "k_" + hashlib.sha256(raw).hexdigest()[:16]


def signature_problem(document: Any, fields: set[str], fmt: str,
                      public_key: Ed25519PublicKey) -> str | None:
    """Step 1: the statement is the platform's (signed like a certificate)."""
    if not isinstance(document, dict) or set(document) != fields:
        return "malformed"
    if document["format"] != fmt:
        return "unsupported_format"
    if document["key_id"] != key_id(public_key):
        return "unknown_key"
    body = {k: v for k, v in document.items() if k != "signature"}
    signed = json.dumps(body, sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode("utf-8")
    encoded = document["signature"]
    try:
        signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        public_key.verify(signature, signed)
    except (InvalidSignature, ValueError, TypeError):
        return "bad_signature"
    return None


def winners_of(seed: bytes, entries: list[str], winners: int) -> list[str]:
    """Steps 4-5: the partial Fisher-Yates shuffle driven by HMAC-SHA256(seed, digest || c)."""
    digest = hashlib.sha256("\n".join(entries).encode("utf-8")).digest()
    counter = 0

    def uniform(m: int) -> int:
        nonlocal counter
        while True:
            block = hmac.new(seed, digest + counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
            x = int.from_bytes(block, "big")
            if x < SPACE - SPACE % m:
                return x % m

    pool = list(entries)
    k = min(winners, len(pool))
    for i in range(k):
        j = i + uniform(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def draw_problem(commitment: Any, draw: Any, public_key: Ed25519PublicKey) -> str | None:
    """None if the draw is the one the commitment promised and its winners are right."""
    for document, fields, fmt in ((commitment, COMMITMENT_FIELDS, COMMITMENT_FORMAT),
                                  (draw, DRAW_FIELDS, DRAW_FORMAT)):
        problem = signature_problem(document, fields, fmt, public_key)
        if problem is not None:
            return problem
    # Step 2: both statements speak of the same bag and the same committed seed.
    if (draw["lucky_bag"] != commitment["lucky_bag"]
            or draw["seed_sha256"] != commitment["seed_sha256"]):
        return "not_the_same_draw"
    # Step 3: the seed revealed is the one committed to before any entry.
    try:
        seed = bytes.fromhex(draw["seed"])
    except (TypeError, ValueError):
        return "malformed"
    if hashlib.sha256(seed).hexdigest() != commitment["seed_sha256"]:
        return "seed_mismatch"
    if not isinstance(draw["closed_at"], int) or draw["closed_at"] < commitment["draw_at"]:
        return "drawn_too_early"
    # Step 4: the entries, each once, sorted by UTF-8 bytes, and their digest.
    entries = draw["entries"]
    if (not isinstance(entries, list) or not all(isinstance(e, str) and "\n" not in e
                                                 for e in entries)
            or entries != sorted(set(entries), key=lambda e: e.encode("utf-8"))):
        return "entries_mismatch"
    if hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest() != draw["entries_sha256"]:
        return "entries_mismatch"
    # Step 5: the winners follow from the seed and the entries alone.
    if winners_of(seed, entries, commitment["winners"]) != draw["winners"]:
        return "winners_mismatch"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a liveroom lucky draw offline.")
    parser.add_argument("draw", type=Path, help="GET /api/lucky-bags/{id} answer (JSON)")
    parser.add_argument("--public-key", type=Path, required=True, help="platform key (PEM)")
    args = parser.parse_args(argv)
    try:
        published = json.loads(args.draw.read_text("utf-8"))
        public_key = load_pem_public_key(args.public_key.read_bytes())
        if not isinstance(public_key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
    except (OSError, ValueError) as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 2
    if not isinstance(published, dict) or published.get("draw") is None:
        print("INVALID malformed (no draw yet?)")
        return 1
    problem = draw_problem(published.get("commitment"), published["draw"], public_key)
    if problem is not None:
        print(f"INVALID {problem}")
        return 1
    draw = published["draw"]
    print(f"VALID {draw['lucky_bag']} entries={len(draw['entries'])} "
          f"winners={','.join(draw['winners'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
