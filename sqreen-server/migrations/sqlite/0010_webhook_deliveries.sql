-- What became of each webhook notification of an alert: one row per failed
-- attempt and one for the outcome (sent, gave up, refused, dropped), by the
-- webhook's host only (URLs often carry a token). The alert page lists
-- them. Removed with their alert (retention, application deletion).
-- Keep in step with ../postgres/0014_webhook_deliveries.sql.
CREATE TABLE webhook_deliveries (
    alert_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    time INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_alert ON webhook_deliveries (alert_id, time);
