"""The Socket.IO server of one liveroom process, with its behaviour installed on it alone.

``LeanServer`` is a ``socketio.AsyncServer`` that builds its engine from ``LeanEngine`` (through
python-socketio's ``_engineio_server_class`` hook) and encodes its packets with a packet class
of its own carrying the given JSON codec (python-socketio's ``serializer``), so python-socketio's
``json=`` option, which replaces the codec of every server and client in the process, is never
used. ``LeanEngine`` is an ``engineio.AsyncServer`` whose sessions are ``LeanSocket``s and whose
websockets are answered without permessage-deflate, through a copy of the driver table of its
own. Another ``socketio.AsyncServer`` in the same process keeps python-engineio's classes.

Relied on (python-engineio 4.15.1, ``engineio/async_server.py`` and ``base_server.py``):
``AsyncServer._handle_connect(environ, transport, jsonp_index)`` builds each session as
``async_socket.AsyncSocket(self, sid)``; ``LeanEngine._handle_connect`` is that method with
``LeanSocket`` in its place (``tests/test_engineio_internals.py`` compares the two syntax trees).
``AsyncServer._async`` is the driver table the server reads, its ``"websocket"`` entry the class
it instantiates as ``cls(handler, server)`` and awaits as ``await ws(environ)`` on a websocket
request. From python-socketio 5.18.1: ``AsyncServer._engineio_server_class()``, the
``serializer`` option taking a ``socketio.packet.Packet`` subclass, ``eio``, and
``manager.eio_sid_from_sid``.
"""

from __future__ import annotations

from typing import Any

import engineio
import socketio
from engineio import exceptions, packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import packet as socketio_packet

from .._budget import FrameBudget
from ._fast_events import FastEvents
from ._pins import EngineioIncompatible, check_engineio_version, check_socketio_version
from ._socket import LeanSocket
from ._websocket import UncompressedWebSocket

__all__ = ["LeanEngine", "LeanServer"]


class LeanEngine(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server for one ``LeanServer``: its sessions are ``LeanSocket``s, its
    websockets refuse permessage-deflate, and it carries that server's event fast path (a
    ``LeanSocket`` sees only its engine)."""

    fast_events: FastEvents | None = None
    start_service_task: bool  # engineio's, assigned in _handle_connect (declared for mypy)

    def __init__(self, **options: Any) -> None:
        check_engineio_version()
        super().__init__(**options)
        driver = getattr(self, "_async", None)
        if self.async_mode != "aiohttp":
            raise EngineioIncompatible(f"lean sockets need the aiohttp driver, not "
                                       f"{self.async_mode!r}")
        if not isinstance(driver, dict) or driver.get("websocket") is not (
                engineio_aiohttp.WebSocket):
            raise EngineioIncompatible("engineio's aiohttp driver has another websocket class")
        # A copy: the driver module's table is shared by every server in the process.
        self._async = {**driver, "websocket": UncompressedWebSocket}

    # python-engineio's _handle_connect, unchanged but for the class each session is built from.
    async def _handle_connect(self, environ: dict[str, Any], transport: str,
                              jsonp_index: int | None = None) -> Any:
        """Handle a client connection request."""
        if self.start_service_task:
            # start the service task to monitor connected clients
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(
                self._service_task)

        sid = self.generate_id()
        s = LeanSocket(self, sid)
        self.sockets[sid] = s

        pkt = packet.Packet(packet.OPEN, {
            'sid': sid,
            'upgrades': self._upgrades(sid, transport),
            'pingTimeout': int(self.ping_timeout * 1000),
            'pingInterval': int(
                self.ping_interval + self.ping_interval_grace_period) * 1000,
            'maxPayload': self.max_http_buffer_size,
        })
        await s.send(pkt)

        ret = await self._trigger_event('connect', sid, environ,
                                        run_async=False)
        if ret is not None and ret is not True:
            del self.sockets[sid]
            self.logger.warning('Application rejected connection')
            return self._unauthorized(ret or None)

        s.schedule_ping()

        if transport == 'websocket':
            ret = await s.handle_get_request(environ)
            if s.closed and sid in self.sockets:
                # websocket connection ended, so we are done
                del self.sockets[sid]
            return ret
        else:
            s.connected = True
            headers = None
            if self.cookie:
                if isinstance(self.cookie, dict):
                    headers = [(
                        'Set-Cookie',
                        self._generate_sid_cookie(sid, self.cookie)
                    )]
                else:
                    headers = [(
                        'Set-Cookie',
                        self._generate_sid_cookie(sid, {
                            'name': self.cookie, 'path': '/', 'SameSite': 'Lax'
                        })
                    )]
            try:
                return self._ok(await s.poll(), headers=headers,
                                jsonp_index=jsonp_index)
            except exceptions.QueueEmpty:
                return self._bad_request()


class LeanServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` with a ``LeanEngine`` and packets encoded by ``json`` (an object
    with python-socketio's ``dumps``/``loads``), for this server only. Takes python-socketio's
    options otherwise; ``serializer`` is its own."""

    def __init__(self, *, json: Any, **options: Any) -> None:
        check_socketio_version()
        if "serializer" in options:
            raise TypeError("LeanServer chooses its own serializer (it carries json=)")
        codec_packet = type("Packet", (socketio_packet.Packet,), {"json": json})
        super().__init__(serializer=codec_packet, **options)
        self.fast_events = FastEvents(self)
        self.eio.fast_events = self.fast_events

    def _engineio_server_class(self) -> type[LeanEngine]:
        return LeanEngine

    def count_frames_against(self, sid: str, budget: FrameBudget) -> None:
        """From now on the engine socket of the Socket.IO connection ``sid`` counts every frame
        it reads against ``budget``."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        socket = self.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if isinstance(socket, LeanSocket):
            socket.frame_budget = budget
