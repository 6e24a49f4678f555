"""The checks ``liveroom doctor`` and the test suite run on python-engineio and python-socketio.

Each reads installed metadata, attributes, signatures or the names compiled code uses: never a
source file, so they hold on an install without ``.py`` sources. The tests compare the copied
code against the library's source besides (``tests/test_engineio_internals.py``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import engineio
import socketio
from engineio import async_socket as engineio_async_socket
from engineio.async_drivers import aiohttp as engineio_aiohttp

from ...doctor import Check
from ._handshake import check_handshake_internals
from ._pins import (
    EngineioIncompatible,
    SocketioIncompatible,
    check_engineio_version,
    check_socketio_version,
)
from ._server import LeanEngine, LeanServer
from ._websocket import UncompressedWebSocket

__all__ = ["check_engineio", "checks"]


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _expect(error: type[RuntimeError], owner: Any, name: str,
            parameters: list[str] | None = None) -> None:
    member = getattr(owner, name, None)
    label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
    if not callable(member):
        raise error(f"{label} is gone")
    if parameters is not None and _parameters(member) != parameters:
        raise error(f"{label}{tuple(_parameters(member))} != {tuple(parameters)}")


def check_engineio() -> None:
    """The pinned python-engineio, whose aiohttp driver still uses the websocket class that
    ``UncompressedWebSocket`` extends, built and used the way it copies."""
    check_engineio_version()
    if engineio_aiohttp._async.get("websocket") is not engineio_aiohttp.WebSocket:
        raise EngineioIncompatible("engineio's aiohttp driver has another websocket class")
    _expect(EngineioIncompatible, engineio_aiohttp.WebSocket, "__init__",
            ["self", "handler", "server"])
    for method in ("__call__", "send", "wait", "close"):
        _expect(EngineioIncompatible, engineio_aiohttp.WebSocket, method)


def _check_socket_hooks() -> None:
    """What ``LeanSocket`` overrides and calls of engineio's ``AsyncSocket``."""
    socket = engineio_async_socket.AsyncSocket
    for name, parameters in (("_websocket_handler", ["self", "ws"]),
                             ("receive", ["self", "pkt"]), ("send", ["self", "pkt"]),
                             ("close", ["self", "wait", "abort", "reason"]),
                             ("check_ping_timeout", ["self"]),
                             ("handle_get_request", ["self", "environ"]),
                             ("schedule_ping", ["self"]), ("poll", ["self"])):
        _expect(EngineioIncompatible, socket, name, parameters)


def _check_handle_connect() -> None:
    """``LeanEngine._handle_connect`` uses the names engineio's does, but for the class."""
    ours = LeanEngine._handle_connect.__code__
    theirs = engineio.AsyncServer._handle_connect.__code__
    if _parameters(engineio.AsyncServer._handle_connect) != [
            "self", "environ", "transport", "jsonp_index"]:
        raise EngineioIncompatible("AsyncServer._handle_connect has another signature")
    if (set(theirs.co_names) - {"async_socket", "AsyncSocket"} != set(ours.co_names)
            - {"LeanSocket"} or theirs.co_varnames != ours.co_varnames):
        raise EngineioIncompatible("AsyncServer._handle_connect is not the one LeanEngine "
                                   "copies (it builds every session)")


def _check_lean_server() -> None:
    """A ``LeanServer`` built here has a ``LeanEngine`` with the uncompressed websocket, and
    what the handshake deadline and the slow-client reaper read."""
    sio = LeanServer(async_mode="aiohttp", json=json)
    if type(sio.eio) is not LeanEngine or sio.eio._async["websocket"] is not (
            UncompressedWebSocket):
        raise EngineioIncompatible("python-socketio did not build its engine from "
                                   "_engineio_server_class()")
    check_handshake_internals(sio)
    if sio.eio.handlers["connect"] != sio._handle_eio_connect:
        raise SocketioIncompatible("python-socketio registers another engine connect handler")


def _check_manager_hooks() -> None:
    """What ``IndexedRooms`` and ``DirectLocalEmit`` override and call of python-socketio's
    managers."""
    check_socketio_version()
    manager = socketio.AsyncManager
    for name, parameters in (
            ("basic_enter_room", ["self", "sid", "namespace", "room", "eio_sid"]),
            ("basic_leave_room", ["self", "sid", "namespace", "room"]),
            ("basic_disconnect", ["self", "sid", "namespace", "kwargs"]),
            ("get_rooms", ["self", "sid", "namespace"]),
            ("get_participants", ["self", "namespace", "room"]),
            ("emit", ["self", "event", "data", "namespace", "room", "skip_sid", "callback",
                      "to", "kwargs"]),
            ("sid_from_eio_sid", ["self", "eio_sid", "namespace"]),
            ("eio_sid_from_sid", ["self", "sid", "namespace"]),
            ("is_connected", ["self", "sid", "namespace"])):
        _expect(SocketioIncompatible, manager, name, parameters)
    _expect(SocketioIncompatible, socketio.AsyncRedisManager, "_handle_emit", ["self", "message"])
    plain = socketio.AsyncManager()
    for attribute in ("rooms", "callbacks", "pending_connect", "pending_disconnect"):
        if not isinstance(getattr(plain, attribute, None), dict):
            raise SocketioIncompatible(f"AsyncManager().{attribute} is not a dict")


def _check_server_hooks() -> None:
    """What ``FastEvents`` and ``LeanServer`` call of python-socketio's server."""
    server = socketio.AsyncServer
    _expect(SocketioIncompatible, server, "_send_packet", ["self", "eio_sid", "pkt"])
    _expect(SocketioIncompatible, server, "_send_eio_packet", ["self", "eio_sid", "eio_pkt"])
    _expect(SocketioIncompatible, server, "_engineio_server_class", ["self"])
    _expect(SocketioIncompatible, server, "_handle_eio_connect", ["self", "eio_sid", "environ"])
    if "serializer" not in _parameters(socketio.base_server.BaseServer.__init__):
        raise SocketioIncompatible("socketio's server takes no serializer")
    sio = socketio.AsyncServer(async_mode="aiohttp")
    if not isinstance(sio.handlers, dict) or getattr(sio, "not_handled", None) is None:
        raise SocketioIncompatible("socketio's server has no handlers dict or not_handled")


def checks() -> list[Check]:
    return [
        Check("python-engineio is a pinned version", check_engineio_version),
        Check("python-socketio is a pinned version", check_socketio_version),
        Check("engineio's aiohttp websocket is the one without compression extends",
              check_engineio),
        Check("engineio's socket has what LeanSocket overrides and calls", _check_socket_hooks),
        Check("engineio's _handle_connect is the one LeanEngine copies", _check_handle_connect),
        Check("socketio's server has what the fast path calls", _check_server_hooks),
        Check("socketio's managers have what the indexed managers override",
              _check_manager_hooks),
        Check("a LeanServer builds its engine, with what the deadline and reaper read",
              _check_lean_server),
    ]
