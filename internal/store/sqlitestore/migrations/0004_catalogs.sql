-- 0004: heterogeneous fleets. The node catalogue of each instance (what it
-- can run, read from its /object_info), stored once per content hash; the
-- catalogue an instance has; the labels a task requires of its instance.

-- catalogs holds encoded catalogues (catalog.Catalog.Encode) by hash. A
-- record never changes: a changed catalogue is a new hash.
CREATE TABLE catalogs (
	hash       TEXT    PRIMARY KEY,
	data       BLOB    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

-- catalog_hash is '' until the instance's catalogue is read.
ALTER TABLE instances ADD COLUMN catalog_hash TEXT NOT NULL DEFAULT '';

-- requires is the task's label map as JSON, NULL for none.
ALTER TABLE tasks ADD COLUMN requires TEXT;
