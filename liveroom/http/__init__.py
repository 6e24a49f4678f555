"""REST edges: JSON in, JSON out (orjson), one error shape."""

from ._base import Api, json_response

__all__ = ["Api", "json_response"]
