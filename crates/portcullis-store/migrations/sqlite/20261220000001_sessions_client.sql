-- Sessions (issue 4): the client a session was last used from, shown in
-- GET /api/sessions/ so a user can recognise a session that is not theirs
-- (ASVS 5.0 V7.5.2). Set at login and replaced at every refresh. The
-- address is the TCP peer; the user agent is cut to 512 characters.
ALTER TABLE sessions ADD COLUMN ip_address VARCHAR(64);
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
