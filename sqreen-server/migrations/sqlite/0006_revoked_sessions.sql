-- Dashboard sessions ended by a logout, by their cookie's nonce, until the
-- cookie would have expired anyway: a copied cookie no longer opens the
-- dashboard once its session logged out, in any process sharing the
-- database. Housekeeping forgets rows past expires_at.
-- Keep in step with ../postgres/0006_revoked_sessions.sql.
CREATE TABLE revoked_sessions (
    nonce TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
