-- Every change of an account row, whoever made it (this server, another
-- node, the `portcullis user …` commands, plain SQL), is announced on the
-- portcullis_accounts channel with the account's id; every server listens
-- and forgets its cached copy. PostgreSQL sends the notification when the
-- transaction commits (and only then).
CREATE FUNCTION portcullis_account_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portcullis_accounts', OLD.id::text);
    RETURN NULL;
END;
$$;

-- The columns an account read returns (sessions_not_before is not one).
CREATE TRIGGER users_changed AFTER UPDATE OF
    id, username, email, password, is_active, is_staff, is_superuser, date_joined, last_login
    OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION portcullis_account_changed();
