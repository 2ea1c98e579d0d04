-- PostgreSQL only: each merged attribute row also carries its event's client
-- IP and count, in the key's leaf pages (INCLUDE), so that a trend filtered
-- by one property or user identifier and grouped by IP reads that key's
-- range alone instead of checking every event of the time range against a
-- list of ids (180 000 `plan=gold` events of an hour holding 360 000:
-- about 200 ms of PostgreSQL's 250, see BENCHMARKS.md). The merge fills
-- them; rows merged before this migration are filled here (about a minute
-- per million events on the benchmark machine, at the first start of this
-- version, while ingestion waits).
-- SQLite keeps the narrower table: its plan for the same trend already
-- drives from the key, and wider merged rows would slow its ingestion.
ALTER TABLE event_attrs
    ADD COLUMN client_ip TEXT NOT NULL DEFAULT '',
    ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
UPDATE event_attrs a SET client_ip = e.client_ip, count = e.count
    FROM events e WHERE e.id = a.event_id AND (e.client_ip <> '' OR e.count <> 1);
ALTER TABLE event_attrs DROP CONSTRAINT event_attrs_pkey;
ALTER TABLE event_attrs ADD PRIMARY KEY (kind, key, value, time, event_id) INCLUDE (client_ip, count);
