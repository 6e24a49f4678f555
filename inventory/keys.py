"""Redis key names and TTLs for flash-sale stock.

Every key of a sale shares the hash tag ``{sale:ID}`` so that all of a sale's scripts run on one
Redis Cluster slot. The only key outside a sale's tag is the set of active sale ids, which the
sweeper reads from Python and no script touches. The hand-off stream's key, its consumer group
and the active set's name belong to the hand-off schema (``handoff.schema``), which orders reads
them from too.
"""

from __future__ import annotations

import re

from handoff import schema

__all__ = [
    "ACTIVE_SALES",
    "AUCTIONS_DUE",
    "AUCTION_ID_RE",
    "RESERVATION_ID_RE",
    "SALE_ID_RE",
    "SALE_RETENTION_MS",
    "UNREAD_SALES",
    "WAIT_FENCE",
    "AuctionKeys",
    "SaleKeys",
    "auction_keys",
    "auction_sale_id",
    "sale_keys",
]

# Sale ids the sweeper visits (and whose streams orders reads); a sale leaves it once it has
# ended and holds no stock.
ACTIVE_SALES = schema.SALES_KEY
# Sales whose hand-off stream orders has not finished reading (handoff.schema.UNREAD_KEY).
UNREAD_SALES = schema.UNREAD_KEY

# Once a sale has ended and its last hold is settled, its keys live on this long (reservations
# and the stream stay readable for orders/ and support), then Redis drops them.
SALE_RETENTION_MS = 30 * 24 * 3600 * 1000

# Written before each WAIT for replicas: a write after a buy batch on the same connection, whose
# replication offset covers everything the batch wrote or found (its value means nothing).
WAIT_FENCE = "inventory:wait-fence"

SALE_ID_RE = re.compile(r"^s_[A-Za-z0-9_-]{10}$")
RESERVATION_ID_RE = re.compile(r"^(s_[A-Za-z0-9_-]{10})\.([1-9][0-9]{0,14})$")


class SaleKeys(tuple[str, str, str, str, str, str, str]):
    """The seven keys of one sale, in the order every script expects them in KEYS."""

    __slots__ = ()

    @property
    def meta(self) -> str:
        return self[0]

    @property
    def users(self) -> str:
        return self[1]

    @property
    def req(self) -> str:
        return self[2]

    @property
    def holds(self) -> str:
        return self[3]

    @property
    def res(self) -> str:
        return self[4]

    @property
    def stream(self) -> str:
        return self[5]

    @property
    def bans(self) -> str:
        return self[6]


def sale_keys(sale_id: str) -> SaleKeys:
    tag = "{sale:" + sale_id + "}"
    return SaleKeys(
        (
            tag + ":meta",  # hash: the sale and its counters
            tag + ":users",  # hash: user -> units held or sold
            tag + ":req",  # hash: "user:request_id" -> packed first answer
            tag + ":holds",  # zset: reservation -> expiry ms
            tag + ":res",  # hash: reservation -> packed reservation
            schema.stream_key(sale_id),  # stream: hand-off to orders/ (in the same tag)
            tag + ":bans",  # hash: user -> banned until ms (0: until unbanned)
        )
    )


# -- auctions --------------------------------------------------------------------------------
# An auction "a_X" sells the one unit of its own sale "s_X": the winner's hold is a reservation
# of that sale, handed to orders like any other. The auction's keys share the sale's hash tag,
# so a bid batch, the close and the second-chance offer each run in one script on one slot.

AUCTION_ID_RE = re.compile(r"^a_[A-Za-z0-9_-]{10}$")
# Auction ids by the time (ms) they are next due to be looked at: their end while bidding, their
# winner's hold's expiry after the close. Only Python reads it; no script touches it.
AUCTIONS_DUE = "inventory:auctions_due"


class AuctionKeys(tuple[str, ...]):
    """The backing sale's seven keys, then the auction's three, as the auction scripts expect
    them in KEYS."""

    __slots__ = ()

    @property
    def sale(self) -> SaleKeys:
        return SaleKeys(self[:7])

    @property
    def auction(self) -> str:
        return self[7]

    @property
    def bidders(self) -> str:
        return self[8]

    @property
    def req(self) -> str:
        return self[9]


def auction_sale_id(auction_id: str) -> str:
    return "s_" + auction_id[2:]


def auction_keys(auction_id: str) -> AuctionKeys:
    tag = "{sale:" + auction_sale_id(auction_id) + "}"
    return AuctionKeys((
        *sale_keys(auction_sale_id(auction_id)),
        tag + ":auction",  # hash: the auction, its price, leader and runner-up
        tag + ":bidders",  # hash: user -> their highest accepted bid (cents)
        tag + ":bid:req",  # hash: "user:request_id" -> the bid's first answer
    ))
