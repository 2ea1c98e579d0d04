-- The time index also carries each event's client IP and count, so that a
-- trend over a time range, grouped by IP or not, reads the index alone
-- instead of every event's row (a busy hour of 360 000 events: 24 ms
-- instead of 60 ms a pass). Entries stay in time order: a batch still
-- appends to the index's last pages.
-- Keep in step with ../postgres/0005_time_index_covers_trends.sql.
DROP INDEX events_time;
CREATE INDEX events_time ON events (time, id, client_ip, count);
