-- orders on PostgreSQL, version 3: coupons (issue 18), as SQLite's schema_v8. An order records
-- the coupon applied at checkout and the cents it took off; total_cents stays what the buyer
-- pays. The figures' indexes include the discount, so coupon cost is an index-only sum too.
ALTER TABLE orders ADD COLUMN discount_cents BIGINT NOT NULL DEFAULT 0
    CHECK (discount_cents >= 0);
ALTER TABLE orders ADD COLUMN coupon_id TEXT;
CREATE INDEX orders_by_coupon ON orders (coupon_id) WHERE coupon_id IS NOT NULL;
DROP INDEX orders_placed_by_room;
DROP INDEX orders_placed_by_anchor;
CREATE INDEX orders_placed_by_room ON orders (room_id, buyer_id, placed_at)
    INCLUDE (total_cents, discount_cents)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
CREATE INDEX orders_placed_by_anchor ON orders (anchor_id, buyer_id, placed_at)
    INCLUDE (total_cents, room_id, brand, discount_cents)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
