"""The python-engineio and python-socketio versions this subpackage was read against.

Checking a version reads the installed distribution's metadata and nothing else, so it is cheap
enough to run whenever a server is built and works on an install without ``.py`` sources.
"""

from __future__ import annotations

from importlib import metadata

__all__ = [
    "SUPPORTED_ENGINEIO_VERSIONS",
    "SUPPORTED_SOCKETIO_VERSIONS",
    "EngineioIncompatible",
    "SocketioIncompatible",
    "check_engineio_version",
    "check_socketio_version",
]

SUPPORTED_ENGINEIO_VERSIONS = frozenset({"4.15.1"})
SUPPORTED_SOCKETIO_VERSIONS = frozenset({"5.18.1"})

_REREAD = "re-read liveroom/sockets/_engineio/ (its __init__ lists what it relies on)"


class EngineioIncompatible(RuntimeError):
    """The installed python-engineio is not the one these internals were checked against, or
    lacks one of them."""


class SocketioIncompatible(RuntimeError):
    """The installed python-socketio is not the one these internals were checked against, or
    lacks one of them."""


def _require(distribution: str, supported: frozenset[str],
             error: type[RuntimeError]) -> None:
    version = metadata.version(distribution)
    if version not in supported:
        raise error(f"{distribution} {version} is not one of {sorted(supported)}: {_REREAD} "
                    "against its sources before widening the pin")


def check_engineio_version() -> None:
    """Raise ``EngineioIncompatible`` unless the installed python-engineio is a pinned one."""
    _require("python-engineio", SUPPORTED_ENGINEIO_VERSIONS, EngineioIncompatible)


def check_socketio_version() -> None:
    """Raise ``SocketioIncompatible`` unless the installed python-socketio is a pinned one."""
    _require("python-socketio", SUPPORTED_SOCKETIO_VERSIONS, SocketioIncompatible)
