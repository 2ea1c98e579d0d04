-- PostgreSQL only: the three event tables become partitioned by the events'
-- time, one partition per week (weeks counted from the Unix epoch:
-- partition `events_w<N>` holds times in [N, N + 1) * 604 800 000 ms), so
-- that retention drops whole weeks instead of deleting rows (see
-- src/store/partitions.rs). Each table also has a default partition for
-- times outside the weeks created (clocks far off, records queued for a
-- long time), which retention empties row by row.
--
-- `sqreen_event_week(week)` creates one week in the three tables, moving
-- the rows the default partitions hold for it; the server calls it at start
-- and in housekeeping for this week and the next, and it does nothing for a
-- week that exists.
--
-- This migration copies every stored event into the new tables, in one
-- transaction at the first start of this version: ingestion waits while it
-- runs (about a minute per million events on the benchmark machine). Weeks
-- from 60 weeks ago to next week get their partitions; older events go to
-- the default partitions. SQLite keeps its plain tables.

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE event_attrs RENAME TO event_attrs_unpartitioned;
ALTER TABLE event_attrs_by_event RENAME TO event_attrs_by_event_unpartitioned;
ALTER SEQUENCE events_id_seq OWNED BY NONE;

CREATE TABLE events (
    id BIGINT NOT NULL DEFAULT nextval('events_id_seq'),
    app_id BIGINT NOT NULL,
    rid TEXT NOT NULL,
    event TEXT NOT NULL,
    time BIGINT NOT NULL,
    client_ip TEXT NOT NULL,
    user_key TEXT NOT NULL,
    properties TEXT NOT NULL,
    count BIGINT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    context_id BIGINT
) PARTITION BY RANGE (time);

CREATE TABLE event_attrs (
    event_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time BIGINT NOT NULL,
    client_ip TEXT NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 1
) PARTITION BY RANGE (time);

CREATE TABLE event_attrs_by_event (
    event_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time BIGINT NOT NULL
) PARTITION BY RANGE (time);

-- Storage parameters cannot be set on a partitioned table: each partition
-- gets those of migration 0007.
CREATE FUNCTION sqreen_event_partition_options(t TEXT) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I SET (autovacuum_vacuum_insert_threshold = 20000, '
                   'autovacuum_vacuum_insert_scale_factor = 0)', t);
END $$;

CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE event_attrs_default PARTITION OF event_attrs DEFAULT;
CREATE TABLE event_attrs_by_event_default PARTITION OF event_attrs_by_event DEFAULT;
SELECT sqreen_event_partition_options(t)
    FROM unnest(ARRAY['events_default', 'event_attrs_default',
                      'event_attrs_by_event_default']) AS t;

-- Creates week `week` of the three tables (see the top of this file);
-- returns false when it exists already. The week's rows in the default
-- partitions move into it. Runs in the caller's transaction.
CREATE FUNCTION sqreen_event_week(week BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    lo BIGINT := week * 604800000;
    hi BIGINT := (week + 1) * 604800000;
    t TEXT;
    part TEXT;
BEGIN
    IF to_regclass(format('events_w%s', week)) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    FOREACH t IN ARRAY ARRAY['events', 'event_attrs', 'event_attrs_by_event'] LOOP
        part := format('%s_w%s', t, week);
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, t);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE time >= %s AND time < %s RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved', t || '_default', lo, hi, part);
        PERFORM sqreen_event_partition_options(part);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       t, part, lo, hi);
    END LOOP;
    RETURN TRUE;
END $$;

-- The weeks the stored events need (at most the last 60), this week and the
-- next one.
SELECT sqreen_event_week(w)
    FROM generate_series(
        GREATEST(
            COALESCE((SELECT MIN(time) FROM events_unpartitioned),
                     CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)),
            CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) - CAST(60 * 604800 AS BIGINT) * 1000
        ) / 604800000,
        CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) / 604800000 + 1
    ) AS w;

INSERT INTO events SELECT id, app_id, rid, event, time, client_ip, user_key, properties,
    count, request, response, received_at, context_id FROM events_unpartitioned;
INSERT INTO event_attrs SELECT event_id, kind, key, value, time, client_ip, count
    FROM event_attrs_unpartitioned;
INSERT INTO event_attrs_by_event SELECT event_id, kind, key, value, time
    FROM event_attrs_by_event_unpartitioned;

DROP TABLE events_unpartitioned, event_attrs_unpartitioned, event_attrs_by_event_unpartitioned;
ALTER SEQUENCE events_id_seq OWNED BY events.id;

-- The keys and indexes of migrations 0002-0009, with the partition key
-- (time) in each unique one: ids stay unique through the sequence.
ALTER TABLE events ADD PRIMARY KEY (id, time);
CREATE UNIQUE INDEX events_dedup ON events (app_id, time, rid);
CREATE INDEX events_time ON events (time, id) INCLUDE (client_ip, count);
CREATE INDEX events_event_time ON events (event, time, id) INCLUDE (client_ip, count);
CREATE INDEX events_app_time ON events (app_id, time, id) INCLUDE (client_ip, count);
ALTER TABLE event_attrs ADD PRIMARY KEY (kind, key, value, time, event_id) INCLUDE (client_ip, count);
ALTER TABLE event_attrs_by_event ADD PRIMARY KEY (event_id, kind, key, value, time);
ANALYZE events, event_attrs, event_attrs_by_event;
