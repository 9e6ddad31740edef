-- Calls to an LLM made for a request: planning (purpose 'plan', round 0) and revisions
-- (purpose 'revise', round 1, 2, ...), each with its repairs (attempt 1, 2, ...). Appended by
-- llm_log.rs; an audit log, not live state. `request_id` is NULL for a planning that failed,
-- so that no request was created. Bodies are the JSON sent and received: headers, and so the
-- API key, are never stored.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT REFERENCES requests(id),
    purpose           TEXT NOT NULL,
    round             INTEGER NOT NULL,
    attempt           INTEGER NOT NULL,
    model             TEXT NOT NULL,
    request           TEXT NOT NULL,          -- JSON chat-completions request body
    response          TEXT,                   -- JSON response body, when there was one
    error             TEXT,                   -- JSON ErrorInfo: the call failed, or its answer was refused
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        INTEGER NOT NULL,
    at_ms             INTEGER NOT NULL
);
CREATE INDEX llm_calls_by_request ON llm_calls (request_id, purpose, round);
