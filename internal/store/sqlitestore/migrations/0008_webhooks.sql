-- 0008: webhooks. Subscriptions (for all of an owner's tasks, or for one
-- task) and the durable queue of their deliveries with each one's log.
CREATE TABLE webhook_subs (
	id         TEXT PRIMARY KEY,
	owner      TEXT NOT NULL,
	task_id    TEXT NOT NULL DEFAULT '',
	url        TEXT NOT NULL,
	secret     TEXT NOT NULL,
	events     TEXT NOT NULL DEFAULT '', -- comma-separated; '' for all
	created_at INTEGER NOT NULL
);
CREATE INDEX webhook_subs_task ON webhook_subs (task_id) WHERE task_id <> '';
CREATE INDEX webhook_subs_owner ON webhook_subs (owner, task_id);

CREATE TABLE webhook_deliveries (
	id         TEXT PRIMARY KEY, -- sub_id '.' event_id
	sub_id     TEXT NOT NULL,
	event_id   TEXT NOT NULL,
	type       TEXT NOT NULL,
	task_id    TEXT NOT NULL,
	owner      TEXT NOT NULL,
	url        TEXT NOT NULL,
	secret     TEXT NOT NULL,
	payload    BLOB NOT NULL,
	state      TEXT NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	log        TEXT NOT NULL DEFAULT '[]',
	holder     TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	next_at    INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id, created_at);
