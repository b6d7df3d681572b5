-- 0009: retention. A pinned task (with its output files) or file is kept
-- whatever its age; the partial indexes give the pruner the oldest
-- unpinned finished tasks and files without reading the others.
ALTER TABLE tasks ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_expired ON tasks (finished_at, seq)
	WHERE status IN ('completed', 'failed', 'cancelled') AND pinned = 0;
CREATE INDEX files_expired ON files (created_at, id) WHERE pinned = 0;
