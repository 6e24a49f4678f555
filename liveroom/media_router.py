"""Signaling for a room's broadcast from whichever server process a client is connected to.

The relay of a room runs in the process the anchor published to (the room's *owner*). With
``--workers N`` a viewer may be connected to another process: its ``rtc:watch`` is forwarded to
the owner over the control bus, the owner answers with an SDP that carries its own ICE
candidates, and from then on media flows between the viewer and the owner directly. The owner
also keeps the broadcast's health in Redis, so every process can put it in the room state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
import redis.asyncio as aioredis

from . import keys
from .bus import ControlBus
from .catalog import text_of
from .media import MediaError, MediaService

__all__ = ["MediaRouter", "RemoteMediaError"]

CALL = "media_call"
REPLY = "media_reply"


class RemoteMediaError(MediaError):
    """An error the owner process raised, carried back with its public code."""

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


class MediaRouter:
    def __init__(self, media: MediaService, redis: aioredis.Redis, bus: ControlBus,
                 worker_id: str, *, several_workers: bool, timeout_s: float = 10.0) -> None:
        self.media = media
        self._redis = redis
        self._bus = bus
        self.worker_id = worker_id
        self._several = several_workers
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # The watches this process forwarded: peer -> {room: owner}.
        self._remote_peers: dict[str, dict[str, str]] = {}
        bus.on(CALL, self._serve)
        bus.on(REPLY, self._on_reply)

    # where the broadcast lives ---------------------------------------------------------------

    async def _owner(self, room_id: str) -> str | None:
        if not self._several:
            return self.worker_id
        raw = await self._redis.get(keys.media_owner(room_id))
        return text_of(raw) if raw is not None else None

    async def _claim(self, room_id: str) -> None:
        if self._several:
            await self._redis.set(keys.media_owner(room_id), self.worker_id,
                                  ex=keys.MEDIA_OWNER_TTL_S)

    async def _route(self, room_id: str, op: str, owner: str | None = None,
                     **args: Any) -> dict[str, Any]:
        owner = owner or await self._owner(room_id)
        if owner is None or owner == self.worker_id:
            return await self._local(op, room_id=room_id, **args)
        return await self._call(owner, op, room_id=room_id, **args)

    # the operations --------------------------------------------------------------------------

    async def publish(self, room_id: str, peer: str, sdp: str, type_: str) -> tuple[str, str]:
        # Publishing always happens here: this process becomes the room's owner. A previous
        # broadcast of the room on another process is stopped first.
        owner = await self._owner(room_id)
        if owner is not None and owner != self.worker_id:
            with contextlib.suppress(MediaError, TimeoutError):
                await self._call(owner, "stop", room_id=room_id)
        answer = await self.media.publish(room_id, self._peer(peer), sdp, type_)
        await self._claim(room_id)
        return answer

    async def watch(self, room_id: str, peer: str, sdp: str, type_: str) -> tuple[str, str]:
        owner = await self._owner(room_id)
        reply = await self._route(room_id, "watch", owner, peer=self._peer(peer), sdp=sdp,
                                  type=type_)
        if owner is not None and owner != self.worker_id:
            # Only a watch the owner accepted has a peer there to close on leave or disconnect.
            self._remote_peers.setdefault(peer, {})[room_id] = owner
        return reply["sdp"], reply["type"]

    async def stop(self, room_id: str) -> bool:
        reply = await self._route(room_id, "stop")
        return bool(reply["stopped"])

    async def keyframe(self, room_id: str) -> None:
        await self._route(room_id, "keyframe")

    async def close_peer(self, peer: str) -> None:
        """The socket went away: close all its peer connections, here and on the owners."""
        await self.media.close_peer(self._peer(peer))
        # Publishing is always local, so on the owners this socket has only viewers.
        for room_id, owner in self._remote_peers.pop(peer, {}).items():
            await self._tell(owner, "close_viewer", room_id=room_id, peer=self._peer(peer))

    async def close_viewer(self, room_id: str, peer: str) -> None:
        """The socket left the room (or was banned from it): close its viewer connection to
        that room's broadcast, wherever the broadcast is relayed."""
        await self.media.close_viewer(room_id, self._peer(peer))
        rooms = self._remote_peers.get(peer)
        owner = None if rooms is None else rooms.pop(room_id, None)
        if rooms is not None and not rooms:
            del self._remote_peers[peer]
        if owner is not None:
            await self._tell(owner, "close_viewer", room_id=room_id, peer=self._peer(peer))

    async def health(self, room_id: str) -> dict[str, Any]:
        local = self.media.health(room_id)
        if local["live"] or not self._several:
            return local
        raw = await self._redis.get(keys.media_health(room_id))
        # Not here and no owner's report: ``local`` is the relay's own not-live answer.
        return orjson.loads(raw) if raw is not None else local

    async def store_health(self, room_id: str, health: dict[str, Any]) -> None:
        """Called by the owner's health pusher: keeps the health (and ownership) fresh."""
        if self._several and health["since_ms"] is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(keys.media_health(room_id), orjson.dumps(health),
                         ex=keys.MEDIA_OWNER_TTL_S)
                pipe.set(keys.media_owner(room_id), self.worker_id, ex=keys.MEDIA_OWNER_TTL_S)
                await pipe.execute()

    def _peer(self, peer: str) -> str:
        # Peer ids stay unique across processes: socket ids are only unique per process.
        return f"{self.worker_id}/{peer}"

    # the local side --------------------------------------------------------------------------

    async def _local(self, op: str, room_id: str, **args: Any) -> dict[str, Any]:
        if op == "watch":
            sdp, kind = await self.media.watch(room_id, args["peer"], args["sdp"], args["type"])
            return {"sdp": sdp, "type": kind}
        if op == "stop":
            stopped = await self.media.stop(room_id)
            if stopped and self._several:
                await self._redis.delete(keys.media_owner(room_id), keys.media_health(room_id))
            return {"stopped": stopped}
        if op == "keyframe":
            self.media.request_keyframe(room_id)
            return {}
        if op == "close_viewer":
            await self.media.close_viewer(room_id, args["peer"])
            return {}
        raise ValueError(f"unknown media operation {op!r}")

    # the bus ---------------------------------------------------------------------------------

    async def _tell(self, owner: str, op: str, **args: Any) -> None:
        """A call that expects no reply (closing is best effort: the owner's ICE consent
        check closes a connection whose peer is gone anyway)."""
        await self._bus.publish(CALL, {"to": owner, "op": op, "id": None, "args": args})

    async def _call(self, owner: str, op: str, **args: Any) -> dict[str, Any]:
        call_id = f"{self.worker_id}#{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            await self._bus.publish(CALL, {"to": owner, "from": self.worker_id, "id": call_id,
                                           "op": op, "args": args})
            reply = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            raise RemoteMediaError("media_unavailable",
                                   "the process holding this broadcast did not answer", 503
                                   ) from None
        finally:
            self._pending.pop(call_id, None)
        error = reply.get("error")
        if error:
            raise RemoteMediaError(error["code"], error["message"], error["status"])
        result: dict[str, Any] = reply["result"]
        return result

    async def _serve(self, message: dict[str, Any]) -> None:
        if message.get("to") != self.worker_id:
            return
        reply: dict[str, Any] = {"to": message.get("from"), "id": message.get("id")}
        try:
            reply["result"] = await self._local(message["op"], **message["args"])
        except MediaError as exc:
            reply["error"] = {"code": exc.code, "message": str(getattr(exc, "message", exc)),
                              "status": exc.http_status}
        if message.get("id") is not None:
            await self._bus.publish(REPLY, reply)

    async def _on_reply(self, message: dict[str, Any]) -> None:
        if message.get("to") != self.worker_id:
            return
        future = self._pending.get(str(message.get("id")))
        if future is not None and not future.done():
            future.set_result(message)
