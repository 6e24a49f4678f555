-- Certificates: the signed JSON document is stored verbatim in `document`; the other columns
-- are indexes into it and are cross-checked against it on every read, so editing the database
-- by hand is detected (bad_signature or tampered), never trusted.
CREATE TABLE IF NOT EXISTS certificates (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('vault', 'inspection', 'refund_no_return')),
    product_id  TEXT,
    anchor_id   TEXT,
    category    TEXT,
    issued_at   INTEGER NOT NULL,
    valid_from  INTEGER NOT NULL,
    expires_at  INTEGER,
    key_id      TEXT NOT NULL,
    document    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_product ON certificates (product_id, kind);
CREATE INDEX IF NOT EXISTS certificates_anchor ON certificates (anchor_id, category, kind);
CREATE INDEX IF NOT EXISTS certificates_expiry ON certificates (expires_at);
CREATE INDEX IF NOT EXISTS certificates_start ON certificates (valid_from);

-- A revocation is its own signed record (liveroom.revocation.v1), kept verbatim.
CREATE TABLE IF NOT EXISTS revocations (
    certificate_id  TEXT PRIMARY KEY REFERENCES certificates (id),
    revoked_at      INTEGER NOT NULL,
    document        TEXT NOT NULL
);

-- Append-only audit trail: who issued or revoked what and when, and when a certificate expired
-- or became valid. UNIQUE(certificate_id, action) lets several server processes race to record
-- an expiry: exactly one insert wins and only that process reports the change.
CREATE TABLE IF NOT EXISTS audit (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('issued', 'revoked', 'expired', 'activated')),
    certificate_id  TEXT NOT NULL REFERENCES certificates (id),
    actor_id        TEXT NOT NULL,
    actor_role      TEXT NOT NULL,
    reason          TEXT,
    UNIQUE (certificate_id, action)
);

CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;

-- The public keys certificates may be signed with: each process publishes its active key at
-- start; a key rotated out stays here (as it does in retired_keys/), so it still verifies.
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id       TEXT PRIMARY KEY,
    public_key   TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
