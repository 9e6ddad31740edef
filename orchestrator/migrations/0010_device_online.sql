-- Device views on standby replicas (docs/replicas.md): whether a device is connected lives in
-- the leader's memory; the leader also writes it here, so that a standby can show it.
-- When the device's current connection to the leader was welcomed; NULL while it has none.
-- Set at the hello, cleared at the disconnect, and for every device when a leader starts
-- (a new leader has no connection yet).
ALTER TABLE devices ADD COLUMN online_since_ms INTEGER;
-- A standby counts the attempts each device runs.
CREATE INDEX attempts_live_by_device ON attempts (device) WHERE status IN ('dispatched', 'running');
