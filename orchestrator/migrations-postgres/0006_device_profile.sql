-- The rest of a device's profile from its hello (../migrations/0006_device_profile.sql): the OS
-- version and the tools of its tool executors (JSON array of weft_protocol::ToolSpec), which
-- the planner may use.
ALTER TABLE devices ADD COLUMN os_version TEXT;
ALTER TABLE devices ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';
