-- 0002: claim order by rank (priority with aging), fair share between
-- owners, and warm-model placement.
--
-- rank is store.Rank: created_at minus priority times the aging step, fixed
-- at submit. Tasks queued before this step get the rank of aging off
-- (created_at - priority * 2^36 ms): strict priority among themselves.
ALTER TABLE tasks ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
-- ckpt_key is task.CheckpointKey of the task's checkpoints ('' for none, and
-- for tasks queued before this step).
ALTER TABLE tasks ADD COLUMN ckpt_key TEXT NOT NULL DEFAULT '';
UPDATE tasks SET rank = created_at - priority * 68719476736 WHERE status = 'pending';

DROP INDEX tasks_claim;
-- Claim order is (rank, seq); queue position counts the entries before a
-- task's own.
CREATE INDEX tasks_claim ON tasks (rank, seq) WHERE status = 'pending';
-- The head of each owner's queue.
CREATE INDEX tasks_owner_claim ON tasks (owner, rank, seq) WHERE status = 'pending';
-- An owner's first pending task that needs a given model.
CREATE INDEX tasks_ckpt_claim ON tasks (owner, ckpt_key, rank, seq) WHERE status = 'pending' AND ckpt_key <> '';

-- queue_owners counts each owner's pending and running tasks and keeps when
-- one of its tasks was last claimed (served, Unix ms), by triggers: a claim
-- serves the waiting owner with the fewest running tasks, then the one
-- served least recently.
CREATE TABLE queue_owners (
	owner   TEXT    PRIMARY KEY,
	pending INTEGER NOT NULL,
	running INTEGER NOT NULL,
	served  INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
-- Owners with work waiting, in fair-share order: the claim reads the first.
CREATE INDEX queue_owners_waiting ON queue_owners (running, served, owner) WHERE pending > 0;

INSERT INTO queue_owners (owner, pending, running)
	SELECT owner, sum(status = 'pending'), sum(status = 'running') FROM tasks
	WHERE status IN ('pending', 'running') GROUP BY owner;

CREATE TRIGGER tasks_owner_insert AFTER INSERT ON tasks WHEN NEW.status IN ('pending', 'running') BEGIN
	INSERT OR IGNORE INTO queue_owners (owner, pending, running) VALUES (NEW.owner, 0, 0);
	UPDATE queue_owners SET pending = pending + (NEW.status = 'pending'), running = running + (NEW.status = 'running')
		WHERE owner = NEW.owner;
END;
CREATE TRIGGER tasks_owner_update AFTER UPDATE OF status ON tasks
	WHEN OLD.status <> NEW.status AND (OLD.status IN ('pending', 'running') OR NEW.status IN ('pending', 'running')) BEGIN
	INSERT OR IGNORE INTO queue_owners (owner, pending, running) VALUES (NEW.owner, 0, 0);
	UPDATE queue_owners SET
		pending = pending - (OLD.status = 'pending') + (NEW.status = 'pending'),
		running = running - (OLD.status = 'running') + (NEW.status = 'running'),
		served = CASE WHEN OLD.status = 'pending' AND NEW.status = 'running' THEN NEW.started_at ELSE served END
		WHERE owner = NEW.owner;
END;
CREATE TRIGGER tasks_owner_delete AFTER DELETE ON tasks WHEN OLD.status IN ('pending', 'running') BEGIN
	UPDATE queue_owners SET pending = pending - (OLD.status = 'pending'), running = running - (OLD.status = 'running')
		WHERE owner = OLD.owner;
END;
