"""Errors of the inventory package. Each carries its data, a public ``code`` and an ``http_status``.

::

    InventoryError                     inventory_error      500
    ├── InvalidSale                    invalid_sale         400  bad create/end input
    ├── UnknownSale                    unknown_sale         404
    ├── UnknownReservation             unknown_reservation  404
    ├── InvalidAuction                 invalid_auction      400  bad auction input
    ├── UnknownAuction                 unknown_auction      404
    ├── NotHolder                      not_holder           403  someone else's reservation
    ├── HoldExpired                    hold_expired         410  commit after the hold ran out
    ├── HoldNotActive                  hold_not_active      409  commit/release of a settled hold
    ├── NotCommitted                   not_committed        409  restock of an unsold reservation
    ├── ServiceNotRunning              service_unavailable  503  buy() outside start()..close()
    ├── StoreUnavailable               store_unavailable    503  Redis could not be reached
    └── ScriptFailed                   internal_error       500  a script answered an error

Buy outcomes (sold out, limit reached, ...) are not exceptions: they are statuses of a
``BuyResult``, because thousands of them per second are the normal case.
"""

from __future__ import annotations

__all__ = [
    "HoldExpired",
    "HoldNotActive",
    "InvalidAuction",
    "InvalidSale",
    "InventoryError",
    "NotCommitted",
    "NotHolder",
    "ScriptFailed",
    "ServiceNotRunning",
    "StoreUnavailable",
    "UnknownAuction",
    "UnknownReservation",
    "UnknownSale",
]


class InventoryError(Exception):
    code = "inventory_error"
    http_status = 500


class InvalidSale(InventoryError):
    code = "invalid_sale"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownSale(InventoryError):
    code = "unknown_sale"
    http_status = 404

    def __init__(self, sale_id: str) -> None:
        super().__init__(f"no sale {sale_id!r}")
        self.sale_id = sale_id


class UnknownReservation(InventoryError):
    code = "unknown_reservation"
    http_status = 404

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"no reservation {reservation_id!r}")
        self.reservation_id = reservation_id


class InvalidAuction(InventoryError):
    code = "invalid_auction"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownAuction(InventoryError):
    code = "unknown_auction"
    http_status = 404

    def __init__(self, auction_id: str) -> None:
        super().__init__(f"no auction {auction_id!r}")
        self.auction_id = auction_id


class NotHolder(InventoryError):
    code = "not_holder"
    http_status = 403

    def __init__(self, reservation_id: str, user_id: str) -> None:
        super().__init__(f"reservation {reservation_id!r} does not belong to {user_id!r}")
        self.reservation_id = reservation_id
        self.user_id = user_id


class HoldExpired(InventoryError):
    code = "hold_expired"
    http_status = 410

    def __init__(self, reservation_id: str, expires_at: int) -> None:
        super().__init__(f"hold {reservation_id!r} expired at {expires_at} ms; its stock is back")
        self.reservation_id = reservation_id
        self.expires_at = expires_at


class HoldNotActive(InventoryError):
    code = "hold_not_active"
    http_status = 409

    def __init__(self, reservation_id: str, state: str) -> None:
        super().__init__(f"reservation {reservation_id!r} is {state}, not held")
        self.reservation_id = reservation_id
        self.state = state


class NotCommitted(InventoryError):
    code = "not_committed"
    http_status = 409

    def __init__(self, reservation_id: str, state: str) -> None:
        super().__init__(f"reservation {reservation_id!r} is {state}, not sold; nothing to restock")
        self.reservation_id = reservation_id
        self.state = state


class ServiceNotRunning(InventoryError):
    code = "service_unavailable"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("the inventory service is not running (start() it before buying)")


class StoreUnavailable(InventoryError):
    code = "store_unavailable"
    http_status = 503

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"stock store unavailable: {detail}; retrying with the same request_id is safe"
        )
        self.detail = detail


class ScriptFailed(InventoryError):
    """Redis answered a script call with an error that retrying does not cure (a bug, an
    out-of-memory refusal, a misconfigured server), never a buyer's mistake. The runner logs
    ``reply``; clients get only a generic message."""

    code = "internal_error"
    http_status = 500

    def __init__(self, script: str, reply: str) -> None:
        super().__init__("the stock store refused the request; it has been logged")
        self.script = script
        self.reply = reply
