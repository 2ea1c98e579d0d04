-- The signing secret of each webhook of a playbook (see ../sqlite/0008_webhook_secrets.sql).
-- Keep in step with ../sqlite/0008_webhook_secrets.sql.
CREATE TABLE webhook_secrets (
    playbook_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (playbook_id, url)
);
