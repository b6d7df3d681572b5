-- 0005: placement by capability. A task's placement requirement (what
-- decides which instances can run it: catalog.Requirement) is stored once
-- per key in caps; cap_instances records which instances can run each; a
-- claim considers only the pending tasks whose requirement the claiming
-- instance can run (and those without one, cap_key '').

CREATE TABLE caps (
	key        TEXT    PRIMARY KEY,
	data       BLOB    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE cap_instances (
	instance_id TEXT NOT NULL,
	cap_key     TEXT NOT NULL,
	PRIMARY KEY (instance_id, cap_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX cap_instances_by_cap ON cap_instances (cap_key, instance_id);

-- cap_key is '' for a task any instance may run (every task queued before
-- this step).
ALTER TABLE tasks ADD COLUMN cap_key TEXT NOT NULL DEFAULT '';

-- The head of each owner's queue, per requirement; and its first pending
-- task needing a given model, per requirement. They replace the per-owner
-- indexes of 0002.
DROP INDEX tasks_owner_claim;
DROP INDEX tasks_ckpt_claim;
CREATE INDEX tasks_cap_claim ON tasks (owner, cap_key, rank, seq) WHERE status = 'pending';
CREATE INDEX tasks_cap_ckpt_claim ON tasks (owner, cap_key, ckpt_key, rank, seq)
	WHERE status = 'pending' AND ckpt_key <> '';

-- queue_caps counts each owner's pending tasks per requirement, by
-- triggers: a claim walks the owners in fair-share order and, for each, only
-- the requirements it has tasks of. A row goes when its count reaches zero.
CREATE TABLE queue_caps (
	owner   TEXT    NOT NULL,
	cap_key TEXT    NOT NULL,
	pending INTEGER NOT NULL,
	PRIMARY KEY (owner, cap_key)
) STRICT, WITHOUT ROWID;

INSERT INTO queue_caps (owner, cap_key, pending)
	SELECT owner, cap_key, count(*) FROM tasks WHERE status = 'pending' GROUP BY owner, cap_key;

CREATE TRIGGER tasks_cap_insert AFTER INSERT ON tasks WHEN NEW.status = 'pending' BEGIN
	INSERT INTO queue_caps (owner, cap_key, pending) VALUES (NEW.owner, NEW.cap_key, 1)
		ON CONFLICT (owner, cap_key) DO UPDATE SET pending = pending + 1;
END;
CREATE TRIGGER tasks_cap_update AFTER UPDATE OF status ON tasks
	WHEN OLD.status <> NEW.status AND (OLD.status = 'pending' OR NEW.status = 'pending') BEGIN
	INSERT INTO queue_caps (owner, cap_key, pending) VALUES (NEW.owner, NEW.cap_key, 0)
		ON CONFLICT (owner, cap_key) DO NOTHING;
	UPDATE queue_caps SET pending = pending - (OLD.status = 'pending') + (NEW.status = 'pending')
		WHERE owner = NEW.owner AND cap_key = NEW.cap_key;
	DELETE FROM queue_caps WHERE owner = NEW.owner AND cap_key = NEW.cap_key AND pending <= 0;
END;
CREATE TRIGGER tasks_cap_delete AFTER DELETE ON tasks WHEN OLD.status = 'pending' BEGIN
	UPDATE queue_caps SET pending = pending - 1 WHERE owner = OLD.owner AND cap_key = OLD.cap_key;
	DELETE FROM queue_caps WHERE owner = OLD.owner AND cap_key = OLD.cap_key AND pending <= 0;
END;
