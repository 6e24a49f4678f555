"""Offline verification: the documented recipe and ``python -m trustbadges.verify``."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.clock import Clock
from trustbadges import CertificateService, canonical_bytes

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

DOC = Path(__file__).resolve().parents[2] / "docs" / "verification.md"
EXAMPLE_AT = 1_750_000_000_000


def doc_blocks(language: str) -> list[str]:
    text = DOC.read_text("utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def doc_example() -> tuple[dict[str, Any], bytes, str]:
    document = next(json.loads(b) for b in doc_blocks("json") if '"signature": "581' in b)
    plain = doc_blocks("")
    pem = next(b for b in plain if "BEGIN PUBLIC KEY" in b).encode()
    signed = next(b for b in plain if b.startswith('{"details"')).strip()
    return document, pem, signed


def documented_verifier() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(doc_blocks("python")[0], str(DOC), "exec"), namespace)
    return namespace["verify_certificate"]


def platform_pem(service: CertificateService) -> bytes:
    return str(service.public_keys()["keys"][0]["public_key_pem"]).encode()


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustbadges.verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_documented_example_checks_out() -> None:
    document, pem, signed = doc_example()
    body = {k: v for k, v in document.items() if k != "signature"}
    assert canonical_bytes(body).decode() == signed
    verify = documented_verifier()
    assert verify(document, pem, EXAMPLE_AT) is None
    tampered = copy.deepcopy(document)
    tampered["details"]["weight_mg"] = 3251
    assert verify(tampered, pem, EXAMPLE_AT) == "bad_signature"


async def test_documented_recipe_verifies_real_certificates(
    service: CertificateService, clock: Clock
) -> None:
    verify = documented_verifier()
    pem = platform_pem(service)
    issued = [
        await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details()),
        await service.issue(
            *INSPECTOR, "inspection", product_id=PHONE_ID, details=inspection_details()
        ),
        await service.issue(
            *ADMIN,
            "refund_no_return",
            anchor_id=ANCHOR_ID,
            category="essential_oil",
            details={"valid_from": clock.now, "valid_until": clock.now + DAY_MS},
        ),
    ]
    for cert in issued:
        downloaded = json.loads(json.dumps((await service.get(cert.id)).to_dict()))
        assert verify(downloaded["certificate"], pem, clock.now) is None
        forged = copy.deepcopy(downloaded["certificate"])
        forged["issuer"]["role"] = "admin" if forged["issuer"]["role"] != "admin" else "inspector"
        assert verify(forged, pem, clock.now) == "bad_signature"
    assert verify(issued[2].to_dict(), pem, clock.now + DAY_MS) == "expired"
    stranger = Ed25519PrivateKey.generate().public_key()
    other_pem = stranger.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert verify(issued[0].to_dict(), other_pem, clock.now) == "unknown_key"


async def test_command_line_verifier(
    service: CertificateService, clock: Clock, tmp_path: Path
) -> None:
    key = tmp_path / "platform.pem"
    key.write_bytes(platform_pem(service))
    cert = await service.issue(
        *INSPECTOR,
        "inspection",
        product_id=PHONE_ID,
        details=inspection_details(),
        expires_at=clock.now + DAY_MS,
    )
    good = tmp_path / "cert.json"
    good.write_text(json.dumps(cert.to_dict()))
    tampered = tmp_path / "tampered.json"
    doc = cert.to_dict()
    doc["details"]["battery_health_pct"] = 100
    tampered.write_text(json.dumps(doc))
    await service.revoke(*INSPECTOR, cert.id, "battery was swapped")
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps((await service.get(cert.id)).to_dict()))
    duplicated = tmp_path / "dup.json"
    duplicated.write_text(json.dumps(cert.to_dict())[:-1] + ', "id": "c_other"}')
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    now = str(clock.now)

    cases = [
        ((good, "--public-key", key, "--at", now), 0, f"VALID {cert.id} kind=inspection"),
        ((tampered, "--public-key", key, "--at", now), 1, "INVALID bad_signature"),
        ((answer, "--public-key", key, "--at", now), 1, "INVALID revoked"),
        ((good, "--public-key", key, "--at", str(clock.now + DAY_MS)), 1, "INVALID expired"),
        ((good, "--public-key", other, "--at", now), 1, "INVALID unknown_key"),
        ((duplicated, "--public-key", key), 2, ""),
        ((tmp_path / "missing.json", "--public-key", key), 2, ""),
    ]
    results = await asyncio.gather(*(asyncio.to_thread(run_cli, *args) for args, _, _ in cases))
    for (args, code, output), result in zip(cases, results, strict=True):
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stdout.startswith(output), (args, result.stdout)


def test_offline_verifier_needs_only_cryptography() -> None:
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import trustbadges.verify\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(new - set(sys.stdlib_module_names))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = set(result.stdout.split())
    # cryptography's own native modules (_cffi_backend, _openssl) come with it.
    assert loaded <= {"trustbadges", "cryptography", "_cffi_backend", "cffi", "_openssl"}, loaded
    assert "segno" not in loaded


@pytest.mark.parametrize("garbage", ["[]", '{"certificate": 5}', "not json"])
def test_command_line_rejects_garbage(tmp_path: Path, garbage: str) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "c.json"
    path.write_text(garbage)
    result = run_cli(path, "--public-key", key)
    assert result.returncode in (1, 2)
    assert "VALID" not in result.stdout.replace("INVALID", "")
