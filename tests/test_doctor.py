"""``liveroom doctor``: each check of the fenced seams printed, and a failing one makes the
command fail."""

from __future__ import annotations

import subprocess
import sys

import aiortc
import pytest

from liveroom.cli import main
from liveroom.doctor import all_checks


def test_every_check_holds_on_this_install(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == [f"ok    {check.name}" for check in all_checks()]
    assert lines[-1] == "every check holds"


def test_a_failing_check_is_named_with_its_reason_and_fails_the_command(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.99.0")
    monkeypatch.setattr("importlib.metadata.version", lambda _name: "9.0.0")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  python-engineio is a pinned version: python-engineio 9.0.0" in out
    assert "FAIL  python-socketio is a pinned version: python-socketio 9.0.0" in out
    assert "FAIL  aiortc is a pinned version: aiortc 1.99.0" in out
    assert "check(s) failed" in out


def test_the_command_runs_on_its_own() -> None:
    done = subprocess.run([sys.executable, "-m", "liveroom", "doctor"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("every check holds")
