-- orders on PostgreSQL, version 2: the figures (GMV, orders, buyers, repeat buyers) are
-- computed by the database from placed, not cancelled orders, never by loading them. Each index
-- holds the rows of one room (or anchor) in (buyer, time) order, as the repeat-buyer window
-- reads them, with the other columns the sums need (index-only scans).
CREATE INDEX orders_placed_by_room ON orders (room_id, buyer_id, placed_at)
    INCLUDE (total_cents)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
CREATE INDEX orders_placed_by_anchor ON orders (anchor_id, buyer_id, placed_at)
    INCLUDE (total_cents, room_id, brand)
    WHERE placed_at IS NOT NULL AND status <> 'cancelled';
