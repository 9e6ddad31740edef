-- weft schema v1. Every table is written by the engine (the one owner of live state) and read
-- by the REST views. Times are milliseconds since the Unix epoch; JSON columns hold
-- weft-protocol types.

CREATE TABLE devices (
    name            TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    token_hash      TEXT NOT NULL,          -- hex SHA-256 of the device token; the token itself is never stored
    platform        TEXT,
    capabilities    TEXT NOT NULL DEFAULT '[]',
    max_concurrency INTEGER NOT NULL DEFAULT 1,
    created_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER
);

CREATE TABLE requests (
    id            TEXT PRIMARY KEY NOT NULL,
    text          TEXT NOT NULL,
    status        TEXT NOT NULL,
    planner       TEXT NOT NULL,
    version       INTEGER NOT NULL,
    error         TEXT,                     -- JSON ErrorInfo
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE TABLE tasks (
    request_id   TEXT NOT NULL REFERENCES requests(id),
    id           TEXT NOT NULL,
    position     INTEGER NOT NULL,
    title        TEXT NOT NULL,
    instruction  TEXT NOT NULL,
    action       TEXT,                      -- JSON Action
    target       TEXT NOT NULL,             -- JSON {"device": name} | {"kind": kind} | {}
    capabilities TEXT NOT NULL,             -- JSON array
    status       TEXT NOT NULL,
    device       TEXT,
    output       TEXT,                      -- JSON TaskOutput
    error        TEXT,                      -- JSON ErrorInfo
    ready_at_ms  INTEGER,
    PRIMARY KEY (request_id, id)
);

CREATE TABLE edges (
    request_id TEXT NOT NULL REFERENCES requests(id),
    from_task  TEXT NOT NULL,
    to_task    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    PRIMARY KEY (request_id, from_task, to_task)
);

CREATE TABLE attempts (
    id            TEXT PRIMARY KEY NOT NULL,
    request_id    TEXT NOT NULL REFERENCES requests(id),
    task_id       TEXT NOT NULL,
    device        TEXT NOT NULL,
    status        TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    deadline_ms   INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    error         TEXT                      -- JSON ErrorInfo
);
CREATE INDEX attempts_by_task ON attempts (request_id, task_id);

-- The journal: every accepted state change, in order. `body` is a JSON weft_protocol::rest::EventKind.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX events_by_request ON events (request_id, seq);
