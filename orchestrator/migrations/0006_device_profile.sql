-- The rest of a device's profile from its hello: the OS version and the tools of its tool
-- executors (JSON array of weft_protocol::ToolSpec), which the planner may use.
ALTER TABLE devices ADD COLUMN os_version TEXT;
ALTER TABLE devices ADD COLUMN tools TEXT NOT NULL DEFAULT '[]';
