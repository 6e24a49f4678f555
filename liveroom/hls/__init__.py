"""Low-Latency HLS for the crowd: the anchor's H.264 remuxed (never re-encoded) into CMAF parts
and segments by one packager per live room, kept in Redis so that any process serves them and
any HTTP cache can hold them (docs/media.md, docs/protocol.md)."""

from ._packager import HlsConfig, HlsPackagers, RoomPackager
from ._playlist import Playlist, Progress
from ._recorder import RecordedSegment, Recorder, Replay
from ._replays import PinMoment, ReplayDesk, SaleMoment
from ._segmenter import InitOut, PartOut, Segmenter, SegmentOut
from ._store import HlsReader, HlsStore, Snapshot, parse_name
from ._transcode import Vp8ToH264
from .exceptions import BadHlsRequest, HlsError, NoReplay, StreamNotFound

__all__ = [
    "BadHlsRequest",
    "HlsConfig",
    "HlsError",
    "HlsPackagers",
    "HlsReader",
    "HlsStore",
    "InitOut",
    "NoReplay",
    "PartOut",
    "PinMoment",
    "Playlist",
    "Progress",
    "RecordedSegment",
    "Recorder",
    "Replay",
    "ReplayDesk",
    "RoomPackager",
    "SaleMoment",
    "SegmentOut",
    "Segmenter",
    "Snapshot",
    "StreamNotFound",
    "Vp8ToH264",
    "parse_name",
]
