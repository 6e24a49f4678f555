-- orders schema, version 6: each order's delivery phone and door as compared across the orders
-- of one sale (orders/_models.py Address.phone_key / door_key). Checkout counts them against the
-- sale's per-person limit, so one person's several accounts buying to one door stay within it.
-- Orders placed before this version have none, and count only by their accounts.
ALTER TABLE orders ADD COLUMN delivery_phone_key TEXT;
ALTER TABLE orders ADD COLUMN delivery_door_key TEXT;
CREATE INDEX orders_by_sale_phone ON orders (sale_id, delivery_phone_key);
CREATE INDEX orders_by_sale_door ON orders (sale_id, delivery_door_key);
