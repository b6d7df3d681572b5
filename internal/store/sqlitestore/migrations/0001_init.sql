-- 0001: tasks and the queue, instance state, file records, runtime config, leases.
--
-- Times are INTEGER Unix milliseconds (0 = not yet). Tables are STRICT so a
-- wrongly typed bind fails loudly instead of being coerced.

-- tasks holds everything about a task except its submitted body. seq is the
-- rowid (FIFO order within a priority); AUTOINCREMENT keeps it growing even if
-- old tasks are ever pruned.
CREATE TABLE tasks (
	seq              INTEGER PRIMARY KEY AUTOINCREMENT,
	id               TEXT    NOT NULL UNIQUE,
	owner            TEXT    NOT NULL,
	status           TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
	priority         INTEGER NOT NULL,
	progress         INTEGER NOT NULL DEFAULT 0,
	instance_id      TEXT    NOT NULL DEFAULT '',
	attempts         INTEGER NOT NULL DEFAULT 0,
	checkpoints      TEXT,
	timeout_ns       INTEGER NOT NULL DEFAULT 0,
	cancel_requested INTEGER NOT NULL DEFAULT 0,
	lease_owner      TEXT    NOT NULL DEFAULT '',
	lease_expires_at INTEGER NOT NULL DEFAULT 0,
	result           TEXT,
	error            TEXT,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	started_at       INTEGER NOT NULL DEFAULT 0,
	finished_at      INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The head of the queue is the first entry of this partial index: a claim
-- reads one index entry, whatever the backlog. Queue position counts the
-- entries before a task's own.
CREATE INDEX tasks_claim ON tasks (priority DESC, seq) WHERE status = 'pending';
-- Listing newest first, by status, by owner, and all.
CREATE INDEX tasks_status_created ON tasks (status, created_at DESC, seq DESC);
CREATE INDEX tasks_owner_created ON tasks (owner, created_at DESC, seq DESC);
CREATE INDEX tasks_created ON tasks (created_at DESC, seq DESC);
-- Running tasks are few (one per instance); recovery and drains look them up.
CREATE INDEX tasks_running ON tasks (instance_id) WHERE status = 'running';

-- task_bodies keeps the submitted workflow and params apart: they can be large
-- and never change, so claim, progress and finish rewrite only a small row.
CREATE TABLE task_bodies (
	seq      INTEGER PRIMARY KEY REFERENCES tasks (seq) ON DELETE CASCADE,
	workflow BLOB,
	params   BLOB
) STRICT;

-- task_counts is kept by triggers so counts and unfiltered totals are O(1).
CREATE TABLE task_counts (
	status TEXT    PRIMARY KEY,
	n      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO task_counts (status, n) VALUES
	('pending', 0), ('running', 0), ('completed', 0), ('failed', 0), ('cancelled', 0);

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
	UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks WHEN OLD.status <> NEW.status BEGIN
	UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
	UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
	UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TABLE instances (
	id                TEXT    PRIMARY KEY,
	enabled           INTEGER NOT NULL,
	alive             INTEGER NOT NULL,
	busy              INTEGER NOT NULL,
	current_task_id   TEXT    NOT NULL,
	last_heartbeat    INTEGER NOT NULL,
	last_error        TEXT    NOT NULL,
	queue_remaining   INTEGER NOT NULL,
	failures          INTEGER NOT NULL,
	device            TEXT    NOT NULL,
	loaded_checkpoint TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE files (
	id           TEXT    PRIMARY KEY,
	owner        TEXT    NOT NULL,
	task_id      TEXT    NOT NULL,
	node_id      TEXT    NOT NULL,
	filename     TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	size         INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX files_created ON files (created_at DESC, id DESC);
CREATE INDEX files_owner_created ON files (owner, created_at DESC, id DESC);
CREATE INDEX files_task_created ON files (task_id, created_at DESC, id DESC);

-- config holds one document, the runtime config saved by PUT /api/config.
CREATE TABLE config (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	doc BLOB    NOT NULL
) STRICT;

CREATE TABLE leases (
	name       TEXT    PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
