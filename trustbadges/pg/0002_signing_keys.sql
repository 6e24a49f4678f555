-- certificates on PostgreSQL, version 2: the public keys certificates may be signed with.
-- Every node publishes its active key at start; a key rotated out stays here, so what it
-- signed still verifies on every node (the private keys never enter the database).
CREATE TABLE signing_keys (
    key_id       TEXT PRIMARY KEY,
    public_key   TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
