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
# Everything the server is made of: what an outside client of its protocol must not import.
SERVER_PACKAGES = frozenset({*SERVER, "handoff"})
WEB_LIBRARIES = ("aiohttp", "socketio", "engineio")


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level names of the absolute imports of ``path`` (lazy ones inside functions too, and
    ``importlib.import_module("name")`` / ``__import__("name")`` with a literal name)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and _called_name(node.func) in _IMPORTERS
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
    return names


_IMPORTERS = frozenset({"import_module", "__import__"})


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_know_neither_the_web_nor_liveroom_nor_each_other(package: str) -> None:
    forbidden = {*WEB_LIBRARIES, "liveroom", *(set(DOMAIN) - {package})}
    offenders = {str(path.relative_to(ROOT)): sorted(_imported(path) & forbidden)
                 for path in _sources(package)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_loadtests_are_an_outside_client_of_the_protocol() -> None:
    """``loadtests/`` drives a server through its protocol and its command line only; no module
    of it imports the server, not even lazily."""
    offenders = {str(path.relative_to(ROOT)): sorted(_imported(path) & SERVER_PACKAGES)
                 for path in _sources("loadtests")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_benchmarks_that_import_the_server_live_in_benchmarks() -> None:
    """Outside the server's own packages and the tests, only ``benchmarks/`` imports the
    server: an in-process benchmark anywhere else is in the wrong place."""
    packages = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}
    outside = sorted(packages - SERVER_PACKAGES - {"tests", "benchmarks"})
    assert "loadtests" in outside
    importers = {str(path.relative_to(ROOT)): sorted(_imported(path) & SERVER_PACKAGES)
                 for folder in outside for path in _sources(folder)}
    assert {path: names for path, names in importers.items() if names} == {}
    benchmarks = {path.name for path in _sources("benchmarks")
                  if _imported(path) & SERVER_PACKAGES}
    assert {"bench_inprocess.py", "bench_media.py"} <= benchmarks


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
