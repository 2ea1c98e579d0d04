-- event_attrs becomes its own lookup index: a WITHOUT ROWID table whose
-- primary key is the (kind, key, value, time, event_id) the filters use.
-- Each attribute was three B-tree inserts (the rowid table, the lookup
-- index, the event_id index) and is now two, and event_attrs_event now
-- covers every column (property joins and EXISTS read no table rows).
-- An event has each (kind, key) once, so the key is unique.
-- Keep in step with ../postgres/0003_attrs_without_rowid.sql.
CREATE TABLE event_attrs_new (
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (kind, key, value, time, event_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO event_attrs_new (event_id, kind, key, value, time)
    SELECT event_id, kind, key, value, time FROM event_attrs
    ORDER BY kind, key, value, time, event_id;
DROP TABLE event_attrs;
ALTER TABLE event_attrs_new RENAME TO event_attrs;
CREATE INDEX event_attrs_event ON event_attrs (event_id);
