-- The web view's login links and browser sessions (orchestrator/src/web/session.rs), stored so
-- that they outlive a restart and are the same on every replica of one database: a link made
-- through the leader can be redeemed on a standby, and a session started anywhere is known
-- everywhere, also after a takeover. Only SHA-256 hashes of link tokens and session ids are
-- kept, like every other secret here. Not engine state: written outside the journal.
CREATE TABLE web_login_links (
    hash TEXT NOT NULL PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE web_sessions (
    hash TEXT NOT NULL PRIMARY KEY,
    -- The token the page sends with state-changing calls (it proves nothing without the
    -- session's cookie, whose id is stored only as a hash).
    csrf TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at_ms);
