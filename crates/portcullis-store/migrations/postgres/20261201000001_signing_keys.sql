-- The key set (issue 3): every node signs and verifies with these keys.
-- A key's state follows from its times (Unix seconds) and the clock:
-- pending before activates_at (or while it is NULL), then active or
-- verify-only, retired from retires_at on. public_key is NULL for HMAC.
CREATE TABLE signing_keys (
    kid          TEXT   PRIMARY KEY,
    algorithm    TEXT   NOT NULL,
    private_key  TEXT   NOT NULL,
    public_key   TEXT,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT,
    retires_at   BIGINT
);
