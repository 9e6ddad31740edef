-- Condition edges, live edits and cancellation (../migrations/0003_living_graph.sql).

-- The predicate of a `condition` edge (JSON weft_protocol::Condition).
ALTER TABLE edges ADD COLUMN condition TEXT;

-- A cancel was asked for: running attempts are being stopped; the task (or request) ends
-- `cancelled` whatever its attempts report.
ALTER TABLE tasks ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
