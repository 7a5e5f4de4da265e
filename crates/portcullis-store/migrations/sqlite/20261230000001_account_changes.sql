-- A counter that moves whenever an account row changes, whoever changed it
-- (this server, another node on the same file, the `portcullis user …`
-- commands). A server's account cache reads `PRAGMA data_version` before
-- each use (it changes when another connection committed anything) and,
-- when it moved, this counter: only a change of an account empties the
-- cache, not every login or refresh written meanwhile.
CREATE TABLE account_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO account_changes (id, version) VALUES (1, 0);

-- The columns an account read returns (sessions_not_before is not one).
CREATE TRIGGER users_changed AFTER UPDATE OF
    id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login
    ON users
BEGIN
    UPDATE account_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER users_deleted AFTER DELETE ON users
BEGIN
    UPDATE account_changes SET version = version + 1 WHERE id = 1;
END;
