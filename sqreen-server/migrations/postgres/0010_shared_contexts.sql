-- The events of one request record share its request and response: they
-- are stored with the record's first event, whose id the others keep in
-- `context_id` (their own `request` and `response` are then 'null'). A
-- record with many tracks so costs its context once.
ALTER TABLE events ADD COLUMN context_id BIGINT;
