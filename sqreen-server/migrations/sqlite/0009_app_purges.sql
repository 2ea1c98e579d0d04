-- Applications deleted whose events are still being removed, a bounded
-- batch per transaction (Store::purge_deleted_apps). The app row, its
-- sessions, actions, alerts and counts go at once when it is deleted; its
-- events follow, and a purge interrupted by a restart is resumed by the
-- housekeeping of any server process.
-- Keep in step with ../postgres/0012_app_purges.sql.
CREATE TABLE app_purges (
    app_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    requested_at INTEGER NOT NULL
);
