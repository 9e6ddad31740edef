-- Devices come and go (`weft device remove`, `weft device rotate`;
-- ../migrations/0007_device_revocation.sql).
-- The hash of the token a rotation replaced: a hello with it is refused `token_rotated`
-- (instead of `bad_token`), so its agent can tell its owner to enroll again.
ALTER TABLE devices ADD COLUMN retired_token_hash TEXT;
ALTER TABLE devices ADD COLUMN token_rotated_at_ms BIGINT;
-- A removed device keeps its row as a tombstone (not loaded as a device): a hello with its
-- last token is refused `device_removed`. Registering the name again replaces the row.
ALTER TABLE devices ADD COLUMN removed_at_ms BIGINT;
