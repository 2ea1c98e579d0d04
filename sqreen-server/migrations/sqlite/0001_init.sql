-- sqreen-server schema (SQLite). Timestamps are milliseconds since the Unix
-- epoch; JSON is kept as TEXT. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    -- Bumped whenever the app's action set changes; sessions that have seen
    -- an older version are told `actions_reload` on their next heartbeat.
    actions_version INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    app_id INTEGER NOT NULL REFERENCES apps (id),
    actions_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    agent TEXT NOT NULL
);
CREATE INDEX sessions_app ON sessions (app_id);

-- One row per tracked event of a request record, and one per metric
-- observation (`count` > 1 possible). `rid` is the dedup key inside an app.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    app_id INTEGER NOT NULL,
    rid TEXT NOT NULL,
    event TEXT NOT NULL,
    time INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    user_key TEXT NOT NULL,
    properties TEXT NOT NULL,
    count INTEGER NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_rid ON events (app_id, rid);
CREATE INDEX events_time ON events (time, id);
CREATE INDEX events_app_time ON events (app_id, time, id);
CREATE INDEX events_event_time ON events (event, time, id);
CREATE INDEX events_ip_time ON events (client_ip, time, id);

-- Properties (kind 'p') and user identifiers (kind 'u') of each event,
-- normalised so that property and user filters use an index.
CREATE TABLE event_attrs (
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    time INTEGER NOT NULL
);
CREATE INDEX event_attrs_lookup ON event_attrs (kind, key, value, time, event_id);
CREATE INDEX event_attrs_event ON event_attrs (event_id);

CREATE TABLE playbooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events that matched a playbook's trigger, per actor: the threshold is
-- counted here, so several server processes count together.
CREATE TABLE playbook_hits (
    playbook_id INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    actor TEXT NOT NULL,
    time INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX playbook_hits_actor ON playbook_hits (playbook_id, app_id, actor, time);
CREATE INDEX playbook_hits_time ON playbook_hits (time);

-- At most one live alert per actor per playbook: the primary key decides
-- which server process raises it.
CREATE TABLE playbook_locks (
    playbook_id INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    actor TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (playbook_id, app_id, actor)
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    playbook_id INTEGER NOT NULL,
    app_id INTEGER NOT NULL,
    actor_type TEXT NOT NULL,
    actor TEXT NOT NULL,
    count INTEGER NOT NULL,
    time INTEGER NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX alerts_time ON alerts (time);

CREATE TABLE actions (
    id TEXT PRIMARY KEY,
    app_id INTEGER NOT NULL,
    playbook_id INTEGER,
    alert_id INTEGER,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    parameters TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    lifted_at INTEGER
);
CREATE INDEX actions_app ON actions (app_id, lifted_at);
