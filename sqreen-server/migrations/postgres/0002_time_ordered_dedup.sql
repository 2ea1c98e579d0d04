-- The dedup key of events starts with the event's time: agents' record ids
-- are random, and a unique index on them alone takes every insert to a
-- random page (one dirty page per event once the table is large). A retried
-- batch carries the same times, so (app_id, time, rid) still recognises it.
DROP INDEX events_rid;
CREATE UNIQUE INDEX events_dedup ON events (app_id, time, rid);
