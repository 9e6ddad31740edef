-- Replicas on one database (issue 16 part 2; docs/replicas.md;
-- ../migrations/0009_leader.sql): the leader's lease and its fencing epoch, in one row. Every
-- commit of a leader checks, inside its transaction, that the epoch is still its own
-- (`SELECT … FOR SHARE`); a takeover raises it (an `UPDATE`, which waits for that commit).
CREATE TABLE leader (
    id BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    -- Raised by one at every takeover; never lowered.
    epoch BIGINT NOT NULL,
    -- Who holds it: a random id per process, and the URL clients are sent to.
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    -- The database's clock (clock_timestamp()), ms since the epoch: renewed before it passes,
    -- or another replica may take over.
    expires_at_ms BIGINT NOT NULL
);
