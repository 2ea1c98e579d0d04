-- What became of each webhook notification of an alert: one row per failed
-- attempt and one for the outcome (sent, gave up, refused, dropped), by the
-- webhook's host only (URLs often carry a token). The alert page lists
-- them. Removed with their alert (retention, application deletion).
-- Keep in step with ../sqlite/0010_webhook_deliveries.sql.
CREATE TABLE webhook_deliveries (
    alert_id BIGINT NOT NULL,
    host TEXT NOT NULL,
    time BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_alert ON webhook_deliveries (alert_id, time);
