-- orders schema, version 2: what the upkeep loop looks up every few seconds, indexed.

-- Checkout intents still pending, and online orders still unpaid (status 'created').
CREATE INDEX orders_by_status ON orders (status, created_at);
-- Online charges still waiting for the provider's answer.
CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'pending';
-- Sold units, by when they were recorded: the check for a sale without an order.
CREATE INDEX reservations_committed ON reservations (updated_at) WHERE state = 'committed';
