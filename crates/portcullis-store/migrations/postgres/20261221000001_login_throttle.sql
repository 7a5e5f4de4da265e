-- Login throttling (issue 6). One row per throttled key: a SHA-256 of the
-- username tried (never the username itself: people type passwords into
-- username fields) or a client address. Kept in the database so that every
-- node counts the same failures. Times are Unix milliseconds.
-- failures counts the failures since window_start; blocked_until is when
-- the next attempt is let through (a growing delay, then a lock).
CREATE TABLE login_failures (
    throttle_key  VARCHAR(100) PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
CREATE INDEX login_failures_window_start ON login_failures (window_start);
