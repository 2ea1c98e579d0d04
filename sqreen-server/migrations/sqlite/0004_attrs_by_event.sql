-- Attributes are written twice: first to event_attrs_by_event, keyed by
-- event_id (every batch lands on the table's last pages), with the event's
-- id in event_attrs_unmerged; later, Store::merge_pending copies the
-- attributes of many batches at once into event_attrs, sorted by its key.
-- Inserted one batch at a time, event_attrs took one random page per
-- distinct value per batch (most of the write-ahead log once the table is
-- large); one sorted run of many batches shares those pages. Queries read
-- event_attrs plus the unmerged events' rows of event_attrs_by_event.
-- event_attrs_by_event also replaces the event_id index of event_attrs.
-- Keep in step with ../postgres/0004_attrs_by_event.sql.
CREATE TABLE event_attrs_by_event (
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (event_id, kind, key, value)
) WITHOUT ROWID;
INSERT OR IGNORE INTO event_attrs_by_event (event_id, kind, key, value, time)
    SELECT event_id, kind, key, value, time FROM event_attrs
    ORDER BY event_id, kind, key, value;
DROP INDEX event_attrs_event;
CREATE TABLE event_attrs_unmerged (
    event_id INTEGER PRIMARY KEY
);
-- The client IP becomes an attribute too (kind 'i', key ''): its index on
-- events had the same one-page-per-distinct-IP cost.
INSERT OR IGNORE INTO event_attrs (event_id, kind, key, value, time)
    SELECT id, 'i', '', client_ip, time FROM events WHERE client_ip <> ''
    ORDER BY client_ip, time, id;
INSERT OR IGNORE INTO event_attrs_by_event (event_id, kind, key, value, time)
    SELECT id, 'i', '', client_ip, time FROM events WHERE client_ip <> ''
    ORDER BY id;
DROP INDEX events_ip_time;
