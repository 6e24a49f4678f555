"""The fence around library internals: only ``liveroom/sockets/_engineio/`` and
``liveroom/media/_aiortc/`` touch private names of python-engineio, python-socketio and aiortc;
the server starts without those libraries' ``.py`` sources; nothing of theirs is patched for the
whole process, at import or at start.

The fence rule, checked on the syntax of every Python file of the project outside the two
subpackages and outside ``FENCE_TESTS`` (the tests that compare the fenced code with the
libraries, so they must read the same internals):

1. An import from the three libraries names their top-level package or one of
   ``PUBLIC_MODULES``, and never a ``_`` name.
2. An attribute whose name is private in the libraries' sources (a ``_name`` they define or
   assign anywhere, or a name-mangled ``_Class__name``) is never read or written on anything
   but ``self``, ``cls`` or ``super()``, unless the project gives objects of its own a private
   attribute of that name and the file imports none of the three libraries (then the object is
   taken to be the project's). A class deriving one of their classes does not touch, even
   through ``self``, a private name of the classes it derives (nor define one: that would
   override it).
3. Such a name is never given as a string to ``getattr``/``setattr``/``hasattr``/``delattr``
   (or pytest's ``monkeypatch`` versions), and no dotted string names a ``_`` path inside them.
4. ``liveroom/`` does not reach python-socketio's engine (``.eio``): every attribute of it is an
   internal, read through the fence's own API instead (``LeanServer``, ``EngineSockets``,
   ``SessionOpenings``).

Rule 2 goes by name, because the syntax does not say which object an expression holds: a
private name of theirs is caught on any object in a file that uses the libraries, and on any
object at all when the project has no attribute of that name. A file that uses the libraries
and reads a same-named private attribute of an object of the project's lists it in
``OWN_OBJECTS`` with the reason. The rule misses internals with public-looking names (an
engine socket's ``queue``); those are the reason for rule 4 and for the lists in the fences'
docstrings.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.server_harness import PATIENCE_S, live_server

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("engineio", "socketio", "aiortc")
FENCES = ("liveroom/sockets/_engineio/", "liveroom/media/_aiortc/")
SCANNED = ("liveroom", "benchmarks", "loadtests", "inventory", "orders", "trustbadges", "tests",
           "scripts")
FENCE_TESTS = frozenset({
    "tests/test_engineio_internals.py",
    "tests/test_fast_events.py",
    "tests/test_socket_manager.py",
    "tests/media/test_aiortc_internals.py",
})
PUBLIC_MODULES = frozenset({
    "engineio", "socketio", "aiortc",
    "socketio.exceptions", "aiortc.exceptions", "aiortc.mediastreams", "aiortc.contrib.media",
    # Not in aiortc's API reference, but a module of public names: tests parse the relay's
    # answers with it.
    "aiortc.sdp",
})
# (file, name) -> why: in a file that uses the libraries, the object is the project's own, whose
# private attribute a library happens to name alike. None so far.
OWN_OBJECTS: dict[tuple[str, str], str] = {}
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
SELF_NAMES = frozenset({"self", "cls"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__") and name != "_"


def _private_definitions(tree: ast.AST) -> set[str]:
    """Private names a module defines or assigns: functions, classes, module globals,
    attributes (mangled as Python mangles ``__name`` inside a class)."""
    names: set[str] = set()

    def visit(node: ast.AST, owner: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = None
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = child.name
            elif isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store):
                name = child.attr
            elif (isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
                  and owner is None):
                name = child.id
            if name is not None and _is_private(name):
                if name.startswith("__") and owner is not None:
                    name = f"_{owner.lstrip('_')}{name}"
                names.add(name)
            visit(child, child.name if isinstance(child, ast.ClassDef) else owner)

    visit(tree, None)
    return names


@cache
def _library_private_names() -> frozenset[str]:
    names: set[str] = set()
    for library in LIBRARIES:
        spec = importlib.util.find_spec(library)
        assert spec is not None
        assert spec.origin is not None
        for path in Path(spec.origin).parent.rglob("*.py"):
            names |= _private_definitions(ast.parse(path.read_text(), str(path)))
    return frozenset(names)


@cache
def _private_names_of(dotted: str) -> frozenset[str]:
    """The private names of a library class and of the library classes it derives."""
    module_name, _, class_name = dotted.rpartition(".")
    try:
        klass = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return _library_private_names()
    names: set[str] = set()
    for base in getattr(klass, "__mro__", ()):
        if base.__module__.split(".")[0] in LIBRARIES:
            tree = ast.parse(textwrap.dedent(inspect.getsource(base)))
            names |= _private_definitions(ast.Module(body=[tree.body[0]], type_ignores=[]))
    return frozenset(names)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _is_super_call(node: ast.expr) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")


class _FenceCheck(ast.NodeVisitor):
    def __init__(self, label: str, in_liveroom: bool, uses_libraries: bool) -> None:
        self.label = label
        self.in_liveroom = in_liveroom
        self.imported: dict[str, str] = {}  # local name -> dotted path it was imported as
        self.library_classes: list[frozenset[str]] = []  # private names per enclosing class
        self.found: list[str] = []
        self.theirs = _library_private_names()
        # Private names of theirs that may hold an object of the project's in this file.
        self.shared = frozenset() if uses_libraries else _project_private_names()

    def _report(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.label}:{getattr(node, 'lineno', '?')}: {what}")

    def _library_module(self, dotted: str) -> bool:
        return dotted.split(".")[0] in LIBRARIES

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._library_module(alias.name) and alias.name not in PUBLIC_MODULES:
                self._report(node, f"imports {alias.name}, not a public module")
            self.imported[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and self._library_module(module):
            if module not in PUBLIC_MODULES:
                self._report(node, f"imports from {module}, not a public module")
            for alias in node.names:
                path = f"{module}.{alias.name}"
                if _is_private(alias.name):
                    self._report(node, f"imports {path}")
                elif (path not in PUBLIC_MODULES
                      and importlib.util.find_spec(module) is not None
                      and _is_submodule(path)):
                    self._report(node, f"imports {path}, not a public module")
                self.imported[alias.asname or alias.name] = path

    def _resolve(self, node: ast.expr) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        full = self.imported.get(head)
        if full is None:
            return None
        return f"{full}.{rest}" if rest else full

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        names: set[str] = set()
        for base in node.bases:
            resolved = self._resolve(base)
            if resolved is not None and self._library_module(resolved):
                names |= _private_names_of(resolved)
        for statement in node.body:
            if (isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef)
                    and statement.name in names):
                self._report(statement, f"overrides {statement.name} of a library class")
        self.library_classes.append(frozenset(names))
        self.generic_visit(node)
        self.library_classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if name == "eio" and self.in_liveroom:
            self._report(node, "reaches python-socketio's engine (.eio)")
        if _is_private(name):
            own = (isinstance(node.value, ast.Name) and node.value.id in SELF_NAMES) or (
                _is_super_call(node.value))
            inherited = self.library_classes[-1] if self.library_classes else frozenset()
            if own and name in inherited:
                self._report(node, f"uses {name} of the library class it derives")
            elif (not own and name in self.theirs and name not in self.shared
                  and (self.label, name) not in OWN_OBJECTS):
                self._report(node, f"reads or writes {name}, a private name of theirs")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        called = function.id if isinstance(function, ast.Name) else (
            function.attr if isinstance(function, ast.Attribute) else None)
        if called in ATTRIBUTE_FUNCTIONS:
            for argument in node.args:
                if (isinstance(argument, ast.Constant) and isinstance(argument.value, str)
                        and argument.value in self.theirs):
                    self._report(node, f"{called}(..., {argument.value!r})")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if (isinstance(value, str) and self._library_module(value) and "." in value
                and any(_is_private(part) for part in value.split("."))):
            self._report(node, f"names {value!r}")
        if isinstance(value, str) and "__" in value.strip("_") and value in self.theirs:
            self._report(node, f"names the mangled {value!r}")


def _is_submodule(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def _uses_libraries(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
                alias.name.split(".")[0] in LIBRARIES for alias in node.names):
            return True
        if (isinstance(node, ast.ImportFrom) and node.level == 0
                and (node.module or "").split(".")[0] in LIBRARIES):
            return True
    return False


@cache
def _project_private_names() -> frozenset[str]:
    """Private names the project defines or assigns outside the fences."""
    names: set[str] = set()
    for path in _outside_the_fence():
        names |= _private_definitions(ast.parse(path.read_text(), str(path)))
    return frozenset(names)


def fence_violations(label: str, source: str) -> list[str]:
    """Where the source of ``label`` (a path relative to the project) breaks the rule."""
    tree = ast.parse(source, label)
    check = _FenceCheck(label, in_liveroom=label.startswith("liveroom/"),
                        uses_libraries=_uses_libraries(tree))
    check.visit(tree)
    return check.found


def _outside_the_fence() -> list[Path]:
    paths = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            label = path.relative_to(ROOT).as_posix()
            if label.startswith(FENCES) or label in FENCE_TESTS or "node_modules" in label:
                continue
            paths.append(path)
    return paths


def test_nothing_outside_the_fences_touches_a_private_name_of_the_libraries() -> None:
    found = []
    for path in _outside_the_fence():
        label = path.relative_to(ROOT).as_posix()
        found += fence_violations(label, path.read_text())
    assert found == []


@pytest.mark.parametrize("source", [
    "transport._handle_rtp_data = handler",
    "from aiortc import RTCPeerConnection\n"
    "connection = pc.getTransceivers()[0].receiver.transport.transport._connection",
    "from engineio import async_socket",
    "from engineio.async_drivers import aiohttp",
    "import aiortc.codecs.vpx as vpx",
    "queue = getattr(receiver, '_RTCRtpReceiver__decoder_queue')",
    "monkeypatch.setattr('engineio.async_server.async_socket._x', None)",
    "await server.sio._send_packet(sid, pkt)",
    "sockets = sio.eio.sockets",
    "from aiortc.mediastreams import VideoStreamTrack\n"
    "class Track(VideoStreamTrack):\n"
    "    async def recv(self):\n"
    "        return self._timestamp\n",
    "import socketio\n"
    "class Server(socketio.AsyncServer):\n"
    "    def _engineio_server_class(self):\n"
    "        return object\n",
])
def test_the_rule_catches_what_the_fences_do(source: str) -> None:
    assert fence_violations("liveroom/example.py", source) != []


@pytest.mark.parametrize("source", [
    "from aiortc import RTCPeerConnection\nimport socketio",
    "from aiortc.mediastreams import MediaStreamTrack\n"
    "class Track(MediaStreamTrack):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self._frames = []\n",
    "self._task = None\nself._run()",
    "raise socketio.exceptions.ConnectionRefusedError('no')",
])
def test_the_rule_lets_the_public_api_and_own_names_be(source: str) -> None:
    assert fence_violations("liveroom/example.py", source) == []


def _library_state() -> dict[str, int]:
    """Every attribute of the libraries' loaded modules and of the classes they define, by
    identity: a patch shows as a changed entry."""
    state: dict[str, int] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in LIBRARIES:
            continue
        for attribute, value in list(vars(module).items()):
            state[f"{name}.{attribute}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for member, inner in list(vars(value).items()):
                    state[f"{name}.{attribute}.{member}"] = id(inner)
    return state


def _changed(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(key for key in before.keys() & after.keys() if before[key] != after[key])


def _refuse_sources(*_: Any, **__: Any) -> Any:
    raise OSError("could not get source code (installed without .py sources)")


async def test_the_server_starts_and_serves_without_library_sources(
        redis_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for reader in ("getsource", "getsourcelines", "findsource", "getsourcefile"):
        monkeypatch.setattr(inspect, reader, _refuse_sources)
    before = _library_state()
    async with live_server(redis_url, data_dir) as server:
        # A raw websocket client: python-socketio's own client sets engineio globals of its own.
        ws = await server.http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("0{")
        await ws.send_str("40" + orjson.dumps({"token": server.token()}).decode())
        assert (await ws.receive_str(timeout=PATIENCE_S)).startswith("40{")
        await ws.send_str('421["ping",{}]')
        assert orjson.loads((await ws.receive_str(timeout=PATIENCE_S))[3:])[0]["ok"] is True
        await ws.close()
        status, _ = await server.request("GET", "/api/rtc/config", server.token())
        assert status == 200
        assert server.services.media.health("r_none")["live"] is False
        # Nothing of the libraries was patched for the process while it started and served.
        assert _changed(before, _library_state()) == []


def test_importing_and_building_the_server_patches_nothing_of_the_libraries(
        tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import importlib, sys
        from pathlib import Path
        import orjson
        sys.path.insert(0, sys.argv[1])
        from tests.test_internals_fence import LIBRARIES, _changed, _library_state
        for name in ("engineio.async_server", "engineio.async_socket", "engineio.packet",
                     "engineio.async_drivers.aiohttp", "socketio.async_server",
                     "socketio.async_manager", "socketio.async_redis_manager",
                     "socketio.packet", "aiortc.rtcrtpreceiver", "aiortc.rtcrtpsender",
                     "aiortc.codecs.vpx"):
            importlib.import_module(name)
        before = _library_state()
        from liveroom.app import create_app
        from liveroom.settings import Settings
        create_app(Settings(data_dir=Path(sys.argv[2]), secret="s" * 32),
                   "redis://127.0.0.1:1/0")
        print(orjson.dumps(_changed(before, _library_state())).decode())
    """)
    done = subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1]) == []
