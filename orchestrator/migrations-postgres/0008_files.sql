-- Files between devices (issue 17, docs/artifacts.md; ../migrations/0008_files.sql).
-- What a task declares: `{"outputs": [...], "inputs": [...]}` (engine::TaskFiles as JSON), or
-- NULL for a task that declares neither.
ALTER TABLE tasks ADD COLUMN files TEXT;

-- The files a task's succeeding attempt produced, written in the same commit as its result.
-- `sha256` is also the blob's name in the blob store (<data>/blobs/ab/cdef…).
CREATE TABLE files (
    request_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (request_id, task_id, name)
);
-- Which requests refer to a blob (downloads by clients, and retention later).
CREATE INDEX files_by_blob ON files (sha256);
