-- Sessions (issue 4). A login starts a session, which is the family of
-- refresh tokens rotation derives from the first one; its id is the `jti`
-- of that first refresh token and travels in the `sid` claim of every token
-- of the family. revoked_at ends the session: its refresh tokens are
-- blacklisted and its access tokens are refused on every node.
CREATE TABLE sessions (
    id           VARCHAR(255) PRIMARY KEY,
    user_id      BIGINT REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- A refresh token's family, and once rotated, when and into what: the
-- successor's jti and times are enough to sign the same successor again
-- within the grace window without keeping any raw token.
ALTER TABLE outstanding_tokens ADD COLUMN family_id VARCHAR(255);
ALTER TABLE outstanding_tokens ADD COLUMN rotated_at BIGINT;
ALTER TABLE outstanding_tokens ADD COLUMN successor_jti VARCHAR(255);
ALTER TABLE outstanding_tokens ADD COLUMN successor_created_at BIGINT;
ALTER TABLE outstanding_tokens ADD COLUMN successor_expires_at BIGINT;
CREATE INDEX outstanding_tokens_family_id ON outstanding_tokens (family_id);

-- logout-all: tokens of this user issued before this instant are refused.
ALTER TABLE users ADD COLUMN sessions_not_before BIGINT;
