"""The fence around python-engineio's and python-socketio's internals: nothing else in the
project reads or replaces a private name of theirs (``tests/test_internals_fence.py``).

python-socketio and python-engineio do the protocol; the modules here replace the parts of them
that cost most with many connections, and install that behaviour on one server instance at a
time (``LeanServer``): nothing is patched process-wide, at import or at start, and another
``socketio.AsyncServer`` in the process keeps the libraries' own classes.

Checked against **python-engineio 4.15.1** and **python-socketio 5.18.1**; building a server
refuses any other version (a metadata lookup, nothing more). ``liveroom doctor`` and the test
suite run the shape checks of ``_checks.py``; the tests also compare the copied code with the
libraries' sources (``tests/test_engineio_internals.py``, ``tests/test_fast_events.py``,
``tests/test_socket_manager.py``). Before a bump, re-read every module here against the new
sources.

Private names relied on, by module:

- ``_server.py`` (``LeanServer``, ``LeanEngine``): ``socketio.AsyncServer._engineio_server_class``
  (the hook that builds the engine); ``engineio.AsyncServer._handle_connect``, copied with
  ``LeanSocket`` in place of ``async_socket.AsyncSocket``, and what it calls: ``_upgrades``,
  ``_trigger_event``, ``_unauthorized``, ``_generate_sid_cookie``, ``_ok``, ``_bad_request``,
  ``_service_task``; ``engineio.AsyncServer._async`` (the driver table, replaced per engine by a
  copy).
- ``_websocket.py`` (``UncompressedWebSocket``): ``engineio.async_drivers.aiohttp.WebSocket``
  and its ``_sock``, ``handler``, ``server``, ``environ``.
- ``_socket.py`` (``LeanSocket``): ``engineio.async_socket.AsyncSocket._websocket_handler``; the
  driver websocket's ``_sock``.
- ``_fast_events.py`` (``FastEvents``): ``socketio.AsyncServer._send_packet``.
- ``_manager.py`` (``IndexedAsyncManager``, ``IndexedAsyncRedisManager``):
  ``socketio.AsyncServer._send_eio_packet``.
- ``_handshake.py`` (``SessionOpenings``): ``socketio.AsyncServer._handle_eio_connect``, as the
  engine's ``connect`` handler it wraps.

Behaviours of public-looking but undocumented names relied on: the engine server's
``sockets``, ``handlers``, ``on()``, ``ping_interval``, ``ping_timeout``,
``max_http_buffer_size`` and ``reason``; an engine socket's ``queue`` (unbounded, ``None`` ends
its writer), ``closed``, ``connected``, ``upgraded``, ``last_ping``, ``send``, ``receive``,
``check_ping_timeout``, ``close(wait=, abort=, reason=)``, ``handle_get_request``,
``schedule_ping`` and ``poll``; ``engineio.packet.Packet`` and its ``encode_cache``; the
Socket.IO server's ``eio``, ``environ``, ``handlers``, ``not_handled``, ``packet_class`` (a
``serializer`` class's ``json``) and ``manager``; the managers' ``rooms``, ``callbacks``,
``pending_connect``, ``pending_disconnect``, ``basic_enter_room``, ``basic_leave_room``,
``basic_disconnect``, ``get_rooms``, ``get_participants``, ``sid_from_eio_sid``,
``eio_sid_from_sid``, ``is_connected`` and ``emit``. Each module's docstring says how it uses
them.
"""

from ._checks import check_engineio, checks
from ._fast_events import DeferredHandler, FastEvents, Reply
from ._handshake import SessionOpenings, check_handshake_internals, check_reaper_internals
from ._manager import IndexedAsyncManager, IndexedAsyncRedisManager
from ._pins import (
    SUPPORTED_ENGINEIO_VERSIONS,
    SUPPORTED_SOCKETIO_VERSIONS,
    EngineioIncompatible,
    SocketioIncompatible,
)
from ._reaper import EngineSockets
from ._server import LeanEngine, LeanServer
from ._socket import DIRECT_WRITE_MAX_BUFFERED, LeanSocket

__all__ = [
    "DIRECT_WRITE_MAX_BUFFERED",
    "SUPPORTED_ENGINEIO_VERSIONS",
    "SUPPORTED_SOCKETIO_VERSIONS",
    "DeferredHandler",
    "EngineSockets",
    "EngineioIncompatible",
    "FastEvents",
    "IndexedAsyncManager",
    "IndexedAsyncRedisManager",
    "LeanEngine",
    "LeanServer",
    "LeanSocket",
    "Reply",
    "SessionOpenings",
    "SocketioIncompatible",
    "check_engineio",
    "check_handshake_internals",
    "check_reaper_internals",
    "checks",
]
