-- 0009: the event log. The events that report state changes, numbered in
-- the order they were logged (seq, never reused: AUTOINCREMENT), so a
-- client resumes from the last one it saw. The oldest are trimmed beyond
-- store.EventLogSize.
CREATE TABLE events (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	type TEXT NOT NULL,
	task_id TEXT NOT NULL DEFAULT '',
	owner TEXT NOT NULL DEFAULT '',
	time INTEGER NOT NULL,
	data BLOB
);
