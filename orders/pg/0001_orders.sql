-- orders on PostgreSQL, version 1: the SQLite schema of versions 1-6 (orders/schema_v*.sql) in
-- one step. Money in integer cents and times in epoch milliseconds, both BIGINT.
--
-- Written out, not derived from the SQLite files: the same tables, columns, keys and rules, in
-- what PostgreSQL needs instead.
-- - SQLite's INTEGER holds 64 bits, PostgreSQL's 32, which epoch milliseconds overflow: times
--   and money are BIGINT here (quantities and ranks stay INTEGER).
-- - BLOB is BYTEA; SQLite's INTEGER PRIMARY KEY AUTOINCREMENT is an identity column.
-- - payments has no rowid to break ties of created_at in insertion order: its identity column
--   seq does (the store orders by it).
-- - schema_v5's settlement triggers (WHEN ... RAISE(ABORT)) are plpgsql functions here.
-- - Two indexes differ: orders_by_restock is partial, handoff_entries_by_reservation is only here.
-- Nodes record an applied migration by version and name only: never change what this file does
-- (a database migrated by it stays so); change the schema with a new NNNN_*.sql here and its
-- schema_vN.sql for SQLite.

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
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    title       TEXT NOT NULL,
    category    TEXT NOT NULL,
    brand       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    state       TEXT NOT NULL,
    state_rank  INTEGER NOT NULL,
    first_seen  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX reservations_committed ON reservations (updated_at) WHERE state = 'committed';

-- Each stream entry applied exactly once (the consumer is at-least-once).
CREATE TABLE handoff_entries (
    sale_id        TEXT NOT NULL,
    entry_id       TEXT NOT NULL,
    type           TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    at             BIGINT NOT NULL,
    PRIMARY KEY (sale_id, entry_id)
);
CREATE INDEX handoff_entries_by_reservation ON handoff_entries (reservation_id);

-- Entries that could not be decoded: kept, not dropped, so nothing is lost silently.
CREATE TABLE dead_letters (
    sale_id  TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    fields   BYTEA NOT NULL,
    error    TEXT NOT NULL,
    at       BIGINT NOT NULL,
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
    unit_price_cents     BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    total_cents          BIGINT NOT NULL CHECK (total_cents >= 0),
    payment_method       TEXT NOT NULL CHECK (payment_method IN ('cod', 'online')),
    status               TEXT NOT NULL,
    address              TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    placed_at            BIGINT,
    shipped_at           BIGINT,
    delivered_at         BIGINT,
    completed_at         BIGINT,
    cancelled_at         BIGINT,
    buyback_locked_cents BIGINT,
    restock_state        TEXT NOT NULL DEFAULT 'none',
    certificate_warranty_ends_at BIGINT,
    delivery_phone_key   TEXT,
    delivery_door_key    TEXT
);
CREATE INDEX orders_by_buyer ON orders (buyer_id, created_at);
CREATE INDEX orders_by_anchor ON orders (anchor_id, created_at);
CREATE INDEX orders_by_restock ON orders (restock_state) WHERE restock_state = 'pending';
CREATE INDEX orders_by_status ON orders (status, created_at);
CREATE INDEX orders_by_sale_phone ON orders (sale_id, delivery_phone_key);
CREATE INDEX orders_by_sale_door ON orders (sale_id, delivery_door_key);

CREATE TABLE order_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX order_events_by_order ON order_events (order_id, seq);

CREATE TABLE payments (
    -- Insertion order breaks ties of created_at (SQLite's rowid).
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    method       TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    card_last4   TEXT,
    settled_at   BIGINT,
    provider_ref TEXT,
    reason       TEXT
);
CREATE INDEX payments_by_order ON payments (order_id, created_at);
CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'pending';

CREATE TABLE claims (
    id                    TEXT PRIMARY KEY,
    order_id              TEXT NOT NULL REFERENCES orders (id),
    kind                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    amount_cents          BIGINT NOT NULL DEFAULT 0,
    pickup_at             BIGINT,
    return_shipping_payer TEXT,
    reason                TEXT NOT NULL DEFAULT ''
);
CREATE INDEX claims_by_order ON claims (order_id, created_at);
-- One return, refund-no-return or counterfeit claim per order; warranty claims may repeat.
CREATE UNIQUE INDEX claims_one_per_kind ON claims (order_id, kind) WHERE kind <> 'warranty';

-- Payouts: money the platform pays a buyer beyond a refund (an upheld counterfeit claim pays
-- ten times the price). At most one per claim, and one compensation per order.
CREATE TABLE payouts (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    claim_id     TEXT NOT NULL UNIQUE REFERENCES claims (id),
    kind         TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX payouts_by_order ON payouts (order_id, created_at);
CREATE UNIQUE INDEX payouts_one_compensation_per_order ON payouts (order_id)
    WHERE kind = 'counterfeit_compensation';

-- Fake one, pay ten pays never on top of a return or refund, and a compensated order is never
-- returned or refunded: checked inside the writing transaction. The store takes the order's
-- row lock (SELECT ... FOR UPDATE) before any change, so two nodes' transactions on one order
-- run one after the other and each trigger sees the other's committed write.
CREATE FUNCTION payouts_compensation_not_after_refund() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'counterfeit_compensation' AND (
        SELECT status FROM orders WHERE id = NEW.order_id) NOT IN ('delivered', 'completed')
    THEN
        RAISE EXCEPTION 'order_settled: compensation on a returned or refunded order';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payouts_compensation_not_after_refund BEFORE INSERT ON payouts
    FOR EACH ROW EXECUTE FUNCTION payouts_compensation_not_after_refund();

CREATE FUNCTION orders_no_refund_after_compensation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('return_requested', 'returned', 'refunded') AND EXISTS (
        SELECT 1 FROM payouts WHERE order_id = NEW.id AND kind = 'counterfeit_compensation')
    THEN
        RAISE EXCEPTION 'order_settled: return or refund of a compensated order';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER orders_no_refund_after_compensation BEFORE UPDATE OF status ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_no_refund_after_compensation();
