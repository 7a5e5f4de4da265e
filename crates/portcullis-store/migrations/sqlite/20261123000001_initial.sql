-- Accounts, shaped like Django's auth_user (times are Unix seconds).
CREATE TABLE users (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    username     TEXT    NOT NULL UNIQUE,
    email        TEXT    NOT NULL DEFAULT '',
    password     TEXT    NOT NULL,
    is_active    BOOLEAN NOT NULL DEFAULT 1,
    is_staff     BOOLEAN NOT NULL DEFAULT 0,
    is_superuser BOOLEAN NOT NULL DEFAULT 0,
    date_joined  BIGINT  NOT NULL,
    last_login   BIGINT
);

-- simplejwt's OutstandingToken and BlacklistedToken in one table: a refresh
-- or sliding token by jti (never the raw token), blacklisted when
-- blacklisted_at is set. One row, so blacklisting is one conditional UPDATE.
CREATE TABLE outstanding_tokens (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT REFERENCES users (id) ON DELETE SET NULL,
    jti            TEXT   NOT NULL UNIQUE,
    created_at     BIGINT,
    expires_at     BIGINT NOT NULL,
    blacklisted_at BIGINT
);
CREATE INDEX outstanding_tokens_user_id ON outstanding_tokens (user_id);
CREATE INDEX outstanding_tokens_expires_at ON outstanding_tokens (expires_at);

-- Server-wide values every node must share, such as the generated signing key.
CREATE TABLE server_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
