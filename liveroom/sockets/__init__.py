"""Socket.IO edges: thin handlers that parse, call a service and shape the answer."""

from ._base import Connection, SocketEdge

__all__ = ["Connection", "SocketEdge"]
