"""The coupons command against the real server (a real burst on the wall clock: this is the
load tool): more grabbers than coupons, each pressing twice, and the audit's verdict."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.server_harness import LiveServer


async def test_a_burst_of_grabs_passes_the_audit_with_exactly_k_granted(
        server: LiveServer, tmp_path: Path) -> None:
    report_path = tmp_path / "coupons.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests", "coupons", "--url", server.url,
        "--anchor-token", server.token("anchor", "Loady"),
        "--admin-token", server.token("admin", "Minter"), "--grabbers", "300",
        "--coupons", "120", "--attempts", "2", "--jitter-ms", "500", "--processes", "2",
        "--json", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "audit       PASSED" in stderr.decode()
    report = json.loads(report_path.read_text())
    assert (report["connected"], report["processes"]) == (300, 2)
    assert report["granted"] == report["reserved"] == 120
    assert report["statuses"]["granted"] == 120
    assert sum(report["statuses"].values()) == 600
    assert set(report["statuses"]) <= {"granted", "gone", "already_grabbed"}
    assert report["latency_ms"]["count"] == 600
    checks = {c["name"]: c["ok"] for c in report["audit"]["checks"]}
    assert checks["exactly_k_granted"]
    assert checks["nobody_over_limit"]
    assert report["server"]["remaining"] == 0
    assert "<svg" in Path(report["chart"]).read_text()
