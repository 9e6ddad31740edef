-- Replicas on one database (issue 16 part 2; docs/replicas.md): the leader's lease and its
-- fencing epoch, in one row. Every commit of a leader checks, inside its transaction, that the
-- epoch is still its own; a takeover raises it. On SQLite the row stays empty: a SQLite file
-- serves one process (a second `weft serve` on it is refused), and this table is here so the
-- two schemas stay twins.
CREATE TABLE leader (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    -- Raised by one at every takeover; never lowered.
    epoch INTEGER NOT NULL,
    -- Who holds it: a random id per process, and the URL clients are sent to.
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    -- The database's clock, ms since the epoch: renewed before it passes, or another replica
    -- may take over.
    expires_at_ms INTEGER NOT NULL
);
