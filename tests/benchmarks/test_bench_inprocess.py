"""The in-process benchmark runs end to end on the real app (its numbers are for docs, not
asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_in_process_bench_runs_and_reports_both_events(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_inprocess", "--bursts", "3", "--size", "4",
         "--members", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ping" in done.stdout
    assert "buy" in done.stdout
    report = json.loads(out.read_text())
    assert (report["bursts"], report["size"], report["members"]) == (3, 4, 2)
    assert report["ping_us"] > 0
    assert report["buy_us"] > 0
    assert report["buy_over_ping"] == report["buy_us"] / report["ping_us"]
