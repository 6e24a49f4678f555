"""Redis key names, channel and TTLs of the LL-HLS output.

Every key of a room carries the hash tag ``{hls:ROOM}`` so one room's output shares a cluster
slot. Everything expires: a packager refreshes its keys with every part, so the output of a
process that died disappears ``STREAM_TTL_S`` later (and a publish within that time resumes it).
"""

from __future__ import annotations

__all__ = [
    "MEDIA_TTL_S",
    "NEWS_KIND",
    "STREAM_TTL_S",
    "init",
    "part",
    "segment",
    "stream",
]

# Parts and segments leave the playlist after a few seconds; a player that fetched the playlist
# just before must still find them.
MEDIA_TTL_S = 30
STREAM_TTL_S = 30
# The ControlBus message kind every process hears when a room's playlist changes.
NEWS_KIND = "hls"


def stream(room_id: str) -> str:
    """hash: ``state`` (the playlist model, JSON), ``m3u8``, ``last`` ("msn.part")."""
    return f"{{hls:{room_id}}}:stream"


def init(room_id: str, stream_id: str, gen: int) -> str:
    return f"{{hls:{room_id}}}:init:{stream_id}:{gen}"


def part(room_id: str, stream_id: str, msn: int, index: int) -> str:
    return f"{{hls:{room_id}}}:part:{stream_id}:{msn}.{index}"


def segment(room_id: str, stream_id: str, msn: int) -> str:
    return f"{{hls:{room_id}}}:seg:{stream_id}:{msn}"
