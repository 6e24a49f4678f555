-- orders schema, version 3: the warranty end printed on an inspected phone's certificate, kept
-- on the order (seen at checkout and at delivery); the buyer's warranty runs until the later of
-- it and delivery + 180 days.
ALTER TABLE orders ADD COLUMN certificate_warranty_ends_at INTEGER;
