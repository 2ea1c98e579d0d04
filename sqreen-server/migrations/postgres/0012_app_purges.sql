-- Applications deleted whose events are still being removed (see ../sqlite/0009_app_purges.sql).
-- Keep in step with ../sqlite/0009_app_purges.sql.
CREATE TABLE app_purges (
    app_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    requested_at BIGINT NOT NULL
);
