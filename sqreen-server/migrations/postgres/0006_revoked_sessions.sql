-- Dashboard sessions ended by a logout (see ../sqlite/0006_revoked_sessions.sql).
-- Keep in step with ../sqlite/0006_revoked_sessions.sql.
CREATE TABLE revoked_sessions (
    nonce TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
