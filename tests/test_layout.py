"""The package rules DEVELOPERS.md states hold in the source: who may import what, and who reads
the environment."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("inventory", "orders", "trustbadges")
SERVER = ("liveroom", *DOMAIN)
WEB_LIBRARIES = ("aiohttp", "socketio", "engineio")
# The one loadtests module that measures the relay inside the process instead of over the wire.
IN_PROCESS_BENCHMARKS = {"loadtests/bench_media.py", "loadtests/bench_inprocess.py"}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level names of the absolute imports of ``path`` (lazy ones inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_know_neither_the_web_nor_liveroom_nor_each_other(package: str) -> None:
    forbidden = {*WEB_LIBRARIES, "liveroom", *(set(DOMAIN) - {package})}
    offenders = {str(path.relative_to(ROOT)): sorted(_imported(path) & forbidden)
                 for path in _sources(package)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_loadtests_are_an_outside_client_of_the_protocol() -> None:
    offenders = {}
    for path in _sources("loadtests"):
        relative = str(path.relative_to(ROOT))
        names = _imported(path) & set(SERVER)
        if names and relative not in IN_PROCESS_BENCHMARKS:
            offenders[relative] = sorted(names)
    assert offenders == {}


def test_the_database_package_knows_no_domain_nor_the_server() -> None:
    """``database/`` is the shared ground of the PostgreSQL stores: it imports none of them."""
    offenders = {str(path.relative_to(ROOT)): sorted(_imported(path) & {*SERVER, *WEB_LIBRARIES})
                 for path in _sources("database")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = []
    for package in (*SERVER, "database"):
        for path in _sources(package):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id == "os" and node.attr in ("environ", "getenv")):
                    readers.append(str(path.relative_to(ROOT)))
    assert sorted(set(readers)) == ["liveroom/settings.py"]


def test_the_handoff_schema_is_neutral_ground_between_its_producer_and_its_consumer() -> None:
    """``handoff/`` needs only the standard library and msgpack, reads no environment, and only
    the inventory (which writes the stream), orders (which reads it) and liveroom import it."""
    allowed = {"__future__", "msgpack", *sys.stdlib_module_names}
    offenders = {str(path.relative_to(ROOT)): sorted(_imported(path) - allowed)
                 for path in _sources("handoff")}
    assert {path: names for path, names in offenders.items() if names} == {}
    readers = [str(path.relative_to(ROOT)) for path in _sources("handoff")
               for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")]
    assert readers == []
    importers = {package for package in (*SERVER, "loadtests")
                 for path in _sources(package) if "handoff" in _imported(path)}
    assert importers <= {"inventory", "orders", "liveroom"}
