"""``make run`` and ``make test`` set up what a fresh Debian 12 lacks before they use it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _plan(target: str) -> list[str]:
    """The commands ``make`` would run for ``target`` from scratch (-B: nothing built yet)."""
    make = shutil.which("make")
    assert make, "make is required (Debian: apt-get install make)"
    done = subprocess.run([make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, check=True)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _first(plan: list[str], needle: str) -> int:
    for index, line in enumerate(plan):
        if needle in line:
            return index
    raise AssertionError(f"{needle!r} is not in the plan:\n" + "\n".join(plan))


@pytest.mark.parametrize("target", ["run", "test"])
def test_npm_is_installed_through_apt_before_npm_ci(target: str) -> None:
    plan = _plan(target)
    assert _first(plan, "scripts/ensure-apt.sh npm npm") < _first(plan, "npm ci")


@pytest.mark.parametrize("target", ["run", "test"])
def test_redis_server_is_installed_through_apt_before_anything_runs(target: str) -> None:
    plan = _plan(target)
    assert _first(plan, "scripts/ensure-apt.sh redis-server redis-server") < _first(
        plan, "pip install")


def test_redis_sentinel_is_installed_through_apt_with_redis() -> None:
    plan = _plan("test")
    assert _first(plan, "scripts/ensure-apt.sh redis-sentinel redis-sentinel") < _first(
        plan, "pip install")


def test_postgresql_is_installed_through_apt_before_the_tests_run() -> None:
    """The suite starts throwaway PostgreSQL clusters with Debian's initdb and pg_ctl."""
    plan = _plan("test")
    assert _first(plan, "scripts/ensure-apt.sh postgresql") < _first(plan, "pytest")


def test_ensure_apt_does_nothing_when_the_command_is_there() -> None:
    # npm is on PATH here (the web tests need it): no apt-get run, no output, success.
    assert shutil.which("npm")
    done = subprocess.run([str(ROOT / "scripts/ensure-apt.sh"), "npm", "npm"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_nginx_is_installed_through_apt_before_the_tests_run() -> None:
    plan = _plan("test")
    assert _first(plan, "scripts/ensure-apt.sh nginx nginx") < _first(plan, "pytest")
