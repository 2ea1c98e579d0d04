-- The lookup index of event_attrs becomes its primary key, as on SQLite
-- (where the table is now WITHOUT ROWID, keyed by these columns): the same
-- uniqueness on both backends. An event has each (kind, key) once.
-- Keep in step with ../sqlite/0003_attrs_without_rowid.sql.
DELETE FROM event_attrs a USING event_attrs b
    WHERE a.ctid < b.ctid AND a.kind = b.kind AND a.key = b.key AND a.value = b.value
    AND a.time = b.time AND a.event_id = b.event_id;
ALTER TABLE event_attrs ADD PRIMARY KEY (kind, key, value, time, event_id);
DROP INDEX event_attrs_lookup;
