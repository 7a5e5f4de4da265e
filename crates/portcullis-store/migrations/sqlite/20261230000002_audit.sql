-- The audit trail (issue 18): every administrative change, append-only.
-- actor_kind is 'staff' (actor_id, actor_name: the account) or 'cli'
-- (actor_name: the operating-system user). target_name is the username or
-- kid the change was made to. Never a password, hash, token or key.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT  NOT NULL,
    actor_kind  TEXT    NOT NULL,
    actor_name  TEXT    NOT NULL,
    actor_id    BIGINT,
    action      TEXT    NOT NULL,
    target_id   BIGINT,
    target_name TEXT,
    detail      TEXT    NOT NULL DEFAULT '',
    address     TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_target ON audit_log (target_name, id);

-- The console's search by email prefix (username has its UNIQUE index).
CREATE INDEX users_email ON users (email);
