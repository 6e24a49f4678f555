-- orders schema, version 8: coupons (issue 18). An order records the coupon applied at checkout
-- and the cents it took off; total_cents stays what the buyer pays (the unit price times qty,
-- less the discount). The figures' covering indexes carry the discount too, so the anchor's
-- coupon cost is summed from the index like the GMV.
ALTER TABLE orders ADD COLUMN discount_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN coupon_id TEXT;
CREATE INDEX orders_by_coupon ON orders (coupon_id) WHERE coupon_id IS NOT NULL;
DROP INDEX orders_placed_by_room;
DROP INDEX orders_placed_by_anchor;
CREATE INDEX orders_placed_by_room
    ON orders (room_id, buyer_id, placed_at, total_cents, discount_cents)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
CREATE INDEX orders_placed_by_anchor
    ON orders (anchor_id, buyer_id, placed_at, total_cents, room_id, brand, discount_cents)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
