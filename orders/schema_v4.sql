-- orders schema, version 4: payouts, money the platform pays a buyer beyond a refund (an upheld
-- counterfeit claim pays ten times the price). At most one per claim.
CREATE TABLE payouts (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    claim_id     TEXT NOT NULL UNIQUE REFERENCES claims (id),
    kind         TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX payouts_by_order ON payouts (order_id, created_at);
