-- Turn budgets (../migrations/0004_turns.sql): each request's pool (JSON
-- weft_protocol::rest::TurnsView), each task's turn limit, and each attempt's limit (after
-- extensions) and use.
ALTER TABLE requests ADD COLUMN turns TEXT;
ALTER TABLE tasks ADD COLUMN max_turns BIGINT NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN max_turns BIGINT NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN turns_used BIGINT NOT NULL DEFAULT 0;
