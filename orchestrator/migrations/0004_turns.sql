-- Turn budgets: each request's pool (JSON weft_protocol::rest::TurnsView), each task's turn
-- limit, and each attempt's limit (after extensions) and use.
ALTER TABLE requests ADD COLUMN turns TEXT;
ALTER TABLE tasks ADD COLUMN max_turns INTEGER NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN max_turns INTEGER NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN turns_used INTEGER NOT NULL DEFAULT 0;
