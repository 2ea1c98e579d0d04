-- Attributes are written to event_attrs_by_event (keyed by event_id) with
-- the event's id in event_attrs_unmerged, and copied into event_attrs in
-- sorted runs of many batches by Store::merge_pending (several server
-- processes may merge at once: each copies the events its DELETE claimed).
-- Queries read event_attrs plus the unmerged events' rows. The client IP
-- becomes an attribute (kind 'i', key ''), replacing its index on events.
-- Keep in step with ../sqlite/0004_attrs_by_event.sql.
CREATE TABLE event_attrs_by_event (
    event_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time BIGINT NOT NULL,
    PRIMARY KEY (event_id, kind, key, value)
);
INSERT INTO event_attrs_by_event (event_id, kind, key, value, time)
    SELECT event_id, kind, key, value, time FROM event_attrs
    ON CONFLICT DO NOTHING;
DROP INDEX event_attrs_event;
CREATE TABLE event_attrs_unmerged (
    event_id BIGINT PRIMARY KEY
);
INSERT INTO event_attrs (event_id, kind, key, value, time)
    SELECT id, 'i', '', client_ip, time FROM events WHERE client_ip <> ''
    ON CONFLICT DO NOTHING;
INSERT INTO event_attrs_by_event (event_id, kind, key, value, time)
    SELECT id, 'i', '', client_ip, time FROM events WHERE client_ip <> ''
    ON CONFLICT DO NOTHING;
DROP INDEX events_ip_time;
