-- certificates on PostgreSQL, version 1: trustbadges/schema.sql on a server shared by every
-- node. The signed JSON document is stored verbatim in `document`; the other columns are
-- indexes into it and are cross-checked against it on every read, so editing the database by
-- hand is detected (bad_signature or tampered), never trusted. Times in epoch milliseconds.
CREATE TABLE certificates (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('vault', 'inspection', 'refund_no_return')),
    product_id  TEXT,
    anchor_id   TEXT,
    category    TEXT,
    issued_at   BIGINT NOT NULL,
    valid_from  BIGINT NOT NULL,
    expires_at  BIGINT,
    key_id      TEXT NOT NULL,
    document    TEXT NOT NULL
);
CREATE INDEX certificates_product ON certificates (product_id, kind);
CREATE INDEX certificates_anchor ON certificates (anchor_id, category, kind);
CREATE INDEX certificates_expiry ON certificates (expires_at);
CREATE INDEX certificates_start ON certificates (valid_from);

-- A revocation is its own signed record (liveroom.revocation.v1), kept verbatim.
CREATE TABLE revocations (
    certificate_id  TEXT PRIMARY KEY REFERENCES certificates (id),
    revoked_at      BIGINT NOT NULL,
    document        TEXT NOT NULL
);

-- Append-only audit trail. UNIQUE (certificate_id, action) lets every node race to record an
-- expiry: exactly one insert wins and only that node reports the change.
CREATE TABLE audit (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('issued', 'revoked', 'expired', 'activated')),
    certificate_id  TEXT NOT NULL REFERENCES certificates (id),
    actor_id        TEXT NOT NULL,
    actor_role      TEXT NOT NULL,
    reason          TEXT,
    UNIQUE (certificate_id, action)
);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
