-- The time index also carries each event's client IP and count, so that a
-- trend over a time range, grouped by IP or not, can be an index-only scan.
-- Keep in step with ../sqlite/0005_time_index_covers_trends.sql.
DROP INDEX events_time;
CREATE INDEX events_time ON events (time, id) INCLUDE (client_ip, count);
