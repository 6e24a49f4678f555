"""handoff: the schema of the stream on which the inventory tells orders what became of each
reservation (``handoff.schema``). Neutral ground: ``inventory`` (the producer) and ``orders``
(the consumer) both import it and never each other; it imports neither."""

from . import schema

__all__ = ["schema"]
