"""Redis key names and TTLs of the liveroom package (rooms, products, presence, chat).

Every room key carries the hash tag ``{room:ID}`` so a room's keys share one cluster slot.
"""

from __future__ import annotations

__all__ = [
    "CHAT_HISTORY_LEN",
    "COUPONS_DUE",
    "COUPON_RETENTION_S",
    "LIVE_ROOMS",
    "LUCKY_DUE",
    "LUCKY_RETENTION_S",
    "MEDIA_OWNER_TTL_S",
    "PRESENCE_REFRESH_S",
    "PRESENCE_STALE_MS",
    "ROOM_PINS_KEPT",
    "SALE_PUSHED_TTL_S",
    "WATCH_RETENTION_MS",
    "account",
    "account_guest",
    "anchor_followers",
    "anchor_products",
    "anchor_profile",
    "anchor_rooms",
    "chat_budget",
    "coupon_drop",
    "coupon_grabbed",
    "coupon_owners",
    "coupon_pushed",
    "coupon_requests",
    "coupon_used",
    "coupon_wallet",
    "guest_sessions_minute",
    "lucky_bag",
    "lucky_entries",
    "lucky_pushed",
    "media_health",
    "media_owner",
    "otp_address_hour",
    "otp_code",
    "otp_last_sent",
    "otp_phone_hour",
    "product",
    "product_rooms",
    "room_address_bans",
    "room_auctions",
    "room_banned",
    "room_bans",
    "room_chat",
    "room_coupon_drops",
    "room_lucky_bags",
    "room_meta",
    "room_muted",
    "room_new_followers",
    "room_pins",
    "room_presence",
    "room_sales",
    "room_slow",
    "room_unique_viewers",
    "room_viewers_pushed",
    "room_watch_seen",
    "room_watched",
    "sale_pushed",
    "user_following",
]

LIVE_ROOMS = "rooms:live"  # zset room id -> created_at ms
CHAT_HISTORY_LEN = 50
# A socket's presence entry is refreshed by its process every few seconds; an entry older than
# this belongs to a dead process and no longer counts as a viewer.
PRESENCE_STALE_MS = 30_000
PRESENCE_REFRESH_S = 10.0


def room_meta(room_id: str) -> str:
    return f"{{room:{room_id}}}:meta"


def room_presence(room_id: str) -> str:
    """zset ``sid|user_id`` -> last heartbeat ms."""
    return f"{{room:{room_id}}}:presence"


def room_unique_viewers(room_id: str) -> str:
    """HyperLogLog of every user who ever joined (for conversion)."""
    return f"{{room:{room_id}}}:uniq"


def room_chat(room_id: str) -> str:
    return f"{{room:{room_id}}}:chat"


def room_muted(room_id: str) -> str:
    """hash user id -> muted until ms."""
    return f"{{room:{room_id}}}:muted"


def room_banned(room_id: str) -> str:
    """set of banned user ids, as bans were kept before they could end (read, never written)."""
    return f"{{room:{room_id}}}:banned"


def room_bans(room_id: str) -> str:
    """hash user id -> banned until ms (0: until unbanned)."""
    return f"{{room:{room_id}}}:bans"


def room_address_bans(room_id: str) -> str:
    """hash client address -> ``until_ms:since_ms:user_id``: where a banned guest connected
    from; guest sessions made there since the ban stay out until then (or until that user is
    unbanned)."""
    return f"{{room:{room_id}}}:address_bans"


def chat_budget(speaker: str) -> str:
    """The chat budget of a speaker (a user id, or ``addr:<address>``): the theoretical arrival
    time (ms) of its next message (liveroom/lua/gcra.lua); expires when the budget is full."""
    return f"chat:budget:{speaker}"


def room_slow(room_id: str, user_id: str) -> str:
    """Exists while ``user_id`` must wait before chatting again (slow mode); PX = the wait."""
    return f"{{room:{room_id}}}:slow:{user_id}"


def room_viewers_pushed(room_id: str) -> str:
    """The viewer count last pushed to the room, so only one process pushes each change."""
    return f"{{room:{room_id}}}:viewers_pushed"


def room_sales(room_id: str) -> str:
    """zset sale id -> created_at ms."""
    return f"{{room:{room_id}}}:sales"


def room_pins(room_id: str) -> str:
    """list of the room's pins in order, JSON ``{"product", "at"}`` (ms); the newest
    ``ROOM_PINS_KEPT`` (the replay's chapters)."""
    return f"{{room:{room_id}}}:pins"


ROOM_PINS_KEPT = 200


def room_auctions(room_id: str) -> str:
    """zset auction id -> created_at ms."""
    return f"{{room:{room_id}}}:auctions"


def sale_pushed(sale_id: str) -> str:
    """The last ``sale`` state pushed to the room, so one process pushes each change."""
    return f"{{sale:{sale_id}}}:pushed"


SALE_PUSHED_TTL_S = 24 * 3600


# With several workers: which process holds a room's broadcast, and its health; refreshed by
# the owner every few seconds, so a dead owner's claim lapses.
MEDIA_OWNER_TTL_S = 10


def media_owner(room_id: str) -> str:
    return f"{{room:{room_id}}}:media_owner"


def media_health(room_id: str) -> str:
    return f"{{room:{room_id}}}:media_health"


def product(product_id: str) -> str:
    return f"product:{product_id}"


def anchor_profile(anchor_id: str) -> str:
    """hash ``id``, ``name`` (the latest display name), ``since`` (ms) of an account that
    created a room or a product: the registry of anchors that exist."""
    return f"anchor:{anchor_id}:profile"


def anchor_products(anchor_id: str) -> str:
    """zset product id -> created_at ms."""
    return f"anchor:{anchor_id}:products"


def product_rooms(product_id: str) -> str:
    """set of room ids where the product is pinned or on sale (for badge pushes)."""
    return f"product:{product_id}:rooms"


# Buyer accounts and their one-time codes (liveroom/accounts.py). Phones are E.164 ("+<digits>").


def account(user_id: str) -> str:
    """hash: phone, verified_at (ms) of a buyer account."""
    return f"account:{user_id}"


def account_guest(user_id: str) -> str:
    """The guest session a buyer account was signed in from, for a day: counted as one viewer."""
    return f"account:{user_id}:guest"


def otp_code(phone: str) -> str:
    """hash: mac (HMAC of the current code), tries; expires with the code."""
    return f"otp:{phone}:code"


def otp_last_sent(phone: str) -> str:
    """When (ms) a code was last sent to the phone: the next must wait a while."""
    return f"otp:{phone}:last_sent"


def otp_phone_hour(phone: str, hour: int) -> str:
    """Codes sent to the phone in that hour (ms // 3,600,000)."""
    return f"otp:{phone}:hour:{hour}"


def otp_address_hour(address: str, hour: int) -> str:
    """Codes asked for from the client address in that hour."""
    return f"otp:addr:{address}:hour:{hour}"


def guest_sessions_minute(address: str, minute: int) -> str:
    """Guest sessions made from the client address in that minute (ms // 60,000)."""
    return f"session:addr:{address}:minute:{minute}"


# Lucky bags (liveroom/lucky.py) and the watch time they may ask for (liveroom/watch.py).
LUCKY_DUE = "lucky:due"  # zset lucky bag id -> draw_at ms, until its draw is finished
# Once drawn, a lucky bag's keys live this long (its published draw stays checkable), then go.
LUCKY_RETENTION_S = 90 * 24 * 3600


def lucky_bag(bag_id: str) -> str:
    """hash: the bag (room, anchor, product, winners, condition, seed, commitment, status, ...)."""
    return f"{{lucky:{bag_id}}}:meta"


def lucky_entries(bag_id: str) -> str:
    """hash entrant user id -> display name: who entered, each once."""
    return f"{{lucky:{bag_id}}}:entries"


def lucky_pushed(bag_id: str) -> str:
    """The ``lucky`` state last pushed to the room, so one process pushes each change."""
    return f"{{lucky:{bag_id}}}:pushed"


def room_lucky_bags(room_id: str) -> str:
    """zset lucky bag id -> announced_at ms."""
    return f"{{room:{room_id}}}:lucky_bags"


def room_watch_seen(room_id: str) -> str:
    """hash user id -> when (ms) the user was last seen watching the room."""
    return f"{{room:{room_id}}}:watch_seen"


def room_watched(room_id: str) -> str:
    """hash user id -> milliseconds the user was seen watching the room."""
    return f"{{room:{room_id}}}:watched"


WATCH_RETENTION_MS = 7 * 24 * 3600 * 1000


# Followers (liveroom/follows.py).


def anchor_followers(anchor_id: str) -> str:
    """zset follower user id -> when (ms) they began following."""
    return f"anchor:{anchor_id}:followers"


def user_following(user_id: str) -> str:
    """zset anchor id -> when (ms) the user began following them."""
    return f"user:{user_id}:following"


def anchor_rooms(anchor_id: str) -> str:
    """zset room id -> created_at ms of the rooms the anchor opened (those seen opening)."""
    return f"anchor:{anchor_id}:rooms"


def room_new_followers(room_id: str) -> str:
    """set of user ids who began following the room's anchor while the room was live."""
    return f"{{room:{room_id}}}:new_followers"


# Coupon drops (liveroom/coupons.py). A drop's keys share the hash tag {coupon:ID}: the grab,
# use and give-back scripts touch only them. A coupon is named {drop id}.{seq}.
COUPONS_DUE = "coupons:due"  # zset drop id -> expires_at ms, until its end is pushed
# A drop's keys outlive its coupons' validity by this much (the wallet shows them expired).
COUPON_RETENTION_S = 30 * 24 * 3600


def coupon_drop(drop_id: str) -> str:
    """hash: the drop's terms (room, anchor, count, off_cents | percent_off, min_spend_cents,
    created_at, expires_at) and ``left``, the coupons not yet grabbed."""
    return f"{{coupon:{drop_id}}}:meta"


def coupon_grabbed(drop_id: str) -> str:
    """hash user id -> the seq of the coupon they grabbed (one per account)."""
    return f"{{coupon:{drop_id}}}:grabbed"


def coupon_owners(drop_id: str) -> str:
    """hash coupon seq -> user id."""
    return f"{{coupon:{drop_id}}}:owners"


def coupon_requests(drop_id: str) -> str:
    """hash ``user:request_id`` -> seq, for each grab that was granted (a retry replays it)."""
    return f"{{coupon:{drop_id}}}:req"


def coupon_used(drop_id: str) -> str:
    """hash coupon seq -> the order id it is used by."""
    return f"{{coupon:{drop_id}}}:used"


def coupon_pushed(drop_id: str) -> str:
    """The ``coupon`` state last pushed to the room, so one process pushes each change."""
    return f"{{coupon:{drop_id}}}:pushed"


def coupon_wallet(user_id: str) -> str:
    """zset coupon id -> granted_at ms: the user's coupons (written after the grab; a retried
    grab writes it again)."""
    return f"{{user:{user_id}}}:coupons"


def room_coupon_drops(room_id: str) -> str:
    """zset drop id -> created_at ms."""
    return f"{{room:{room_id}}}:coupon_drops"
