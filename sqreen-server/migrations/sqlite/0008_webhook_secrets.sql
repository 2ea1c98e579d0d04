-- The signing secret of each webhook of a playbook (see src/notify.rs),
-- generated when the playbook is saved with that URL and kept while the URL
-- stays in it. Stored in clear: the server needs it to sign. Webhooks saved
-- before this migration have none and are sent unsigned until saved again.
-- Keep in step with ../postgres/0011_webhook_secrets.sql.
CREATE TABLE webhook_secrets (
    playbook_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (playbook_id, url)
);
