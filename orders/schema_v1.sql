-- orders schema, version 1. Money in integer cents, times in epoch milliseconds.

-- Every reservation seen on a hand-off stream or at checkout, one row per reservation id.
-- state only moves forward (state_rank), so a reclaimed old stream entry cannot undo a newer one.
CREATE TABLE reservations (
    id          TEXT PRIMARY KEY,
    sale_id     TEXT NOT NULL,
    room_id     TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    anchor_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    qty         INTEGER NOT NULL CHECK (qty > 0),
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    title       TEXT NOT NULL,
    category    TEXT NOT NULL,
    brand       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    state_rank  INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Each stream entry applied exactly once (the consumer is at-least-once).
CREATE TABLE handoff_entries (
    sale_id        TEXT NOT NULL,
    entry_id       TEXT NOT NULL,
    type           TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    at             INTEGER NOT NULL,
    PRIMARY KEY (sale_id, entry_id)
);

-- Entries that could not be decoded: kept, not dropped, so nothing is lost silently.
CREATE TABLE dead_letters (
    sale_id  TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    fields   BLOB NOT NULL,
    error    TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (sale_id, entry_id)
);

CREATE TABLE orders (
    id                   TEXT PRIMARY KEY,
    reservation_id       TEXT NOT NULL UNIQUE,
    sale_id              TEXT NOT NULL,
    room_id              TEXT NOT NULL,
    anchor_id            TEXT NOT NULL,
    product_id           TEXT NOT NULL,
    buyer_id             TEXT NOT NULL,
    title                TEXT NOT NULL,
    category             TEXT NOT NULL,
    brand                TEXT NOT NULL,
    qty                  INTEGER NOT NULL CHECK (qty > 0),
    unit_price_cents     INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    total_cents          INTEGER NOT NULL CHECK (total_cents >= 0),
    payment_method       TEXT NOT NULL CHECK (payment_method IN ('cod', 'online')),
    status               TEXT NOT NULL,
    address              TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    placed_at            INTEGER,
    shipped_at           INTEGER,
    delivered_at         INTEGER,
    completed_at         INTEGER,
    cancelled_at         INTEGER,
    buyback_locked_cents INTEGER,
    restock_state        TEXT NOT NULL DEFAULT 'none'
);
CREATE INDEX orders_by_buyer ON orders (buyer_id, created_at);
CREATE INDEX orders_by_anchor ON orders (anchor_id, created_at);
CREATE INDEX orders_by_restock ON orders (restock_state);

CREATE TABLE order_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX order_events_by_order ON order_events (order_id, seq);

CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    method       TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    card_last4   TEXT,
    settled_at   INTEGER,
    provider_ref TEXT,
    reason       TEXT
);
CREATE INDEX payments_by_order ON payments (order_id, created_at);

CREATE TABLE claims (
    id                    TEXT PRIMARY KEY,
    order_id              TEXT NOT NULL REFERENCES orders (id),
    kind                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    amount_cents          INTEGER NOT NULL DEFAULT 0,
    pickup_at             INTEGER,
    return_shipping_payer TEXT,
    reason                TEXT NOT NULL DEFAULT ''
);
CREATE INDEX claims_by_order ON claims (order_id, created_at);
-- One return, refund-no-return or counterfeit claim per order; warranty claims may repeat.
CREATE UNIQUE INDEX claims_one_per_kind ON claims (order_id, kind) WHERE kind <> 'warranty';
