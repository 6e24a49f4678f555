"""pyproject.toml promises only versions that were tested: the ones in requirements.lock."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from liveroom.media import SUPPORTED_AIORTC_VERSIONS
from liveroom.sockets._engineio import SUPPORTED_ENGINEIO_VERSIONS, SUPPORTED_SOCKETIO_VERSIONS

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in
            [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.lock line {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_declared_range_admits_the_locked_version() -> None:
    locked = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is declared but not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{requirement} does not admit the locked {locked[name]}")
        upper = [spec for spec in requirement.specifier if spec.operator in ("<", "<=", "==")]
        assert upper, f"{requirement} has no upper bound: an untested major may install"
        for extra in requirement.extras:  # redis[hiredis]: the extra names its package
            assert canonicalize_name(extra) in locked, f"{requirement}: {extra} is not locked"


@pytest.mark.parametrize(("distribution", "supported"), [
    ("python-socketio", SUPPORTED_SOCKETIO_VERSIONS),
    ("python-engineio", SUPPORTED_ENGINEIO_VERSIONS),
    ("aiortc", SUPPORTED_AIORTC_VERSIONS),
])
def test_libraries_with_pinned_internals_are_pinned_exactly(
        distribution: str, supported: frozenset[str]) -> None:
    # The server refuses to start on any other version (a metadata check at start), so a
    # range in pyproject.toml would let pip install a server that cannot start.
    (requirement,) = [r for r in _declared() if canonicalize_name(r.name) == distribution]
    specs = list(requirement.specifier)
    assert [spec.operator for spec in specs] == ["=="], f"{requirement} is not an exact pin"
    assert {specs[0].version} == supported
    assert _locked()[distribution] == specs[0].version
    assert metadata.version(distribution) in supported


def test_the_venv_has_the_locked_versions_of_what_pyproject_declares() -> None:
    locked = _locked()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert metadata.version(name) == locked[name], f"{name} installed differs from the lock"
