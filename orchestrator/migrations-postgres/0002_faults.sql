-- Retries, failover and restart recovery (../migrations/0002_faults.sql).

-- Each task's retry policy (JSON weft_protocol::RetryPolicy), the earliest time its next attempt
-- may start (backoff), when it first became ready (for the task's overall timeout), and the
-- device to avoid on the next attempt after a device-related failure.
ALTER TABLE tasks ADD COLUMN retry TEXT;
ALTER TABLE tasks ADD COLUMN not_before_ms BIGINT;
ALTER TABLE tasks ADD COLUMN first_ready_ms BIGINT;
ALTER TABLE tasks ADD COLUMN avoid_device TEXT;

-- A result that arrived after its attempt had ended (timed out, lost): recorded, never applied.
ALTER TABLE attempts ADD COLUMN late_result TEXT;  -- JSON weft_protocol::rest::LateResult
CREATE INDEX attempts_live ON attempts (status) WHERE status IN ('dispatched', 'running');

-- A draining device takes no new work.
ALTER TABLE devices ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;

CREATE INDEX requests_live ON requests (status) WHERE status IN ('planning', 'running');
