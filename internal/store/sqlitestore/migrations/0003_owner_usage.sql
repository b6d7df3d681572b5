-- 0003: the bytes of each owner's files, kept by triggers, so the storage
-- quota reads one row whatever the owner holds (UsageGet; the pending count
-- is queue_owners.pending).
CREATE TABLE owner_files (
	owner TEXT    PRIMARY KEY,
	bytes INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO owner_files (owner, bytes) SELECT owner, sum(size) FROM files GROUP BY owner;

CREATE TRIGGER files_bytes_insert AFTER INSERT ON files BEGIN
	INSERT OR IGNORE INTO owner_files (owner, bytes) VALUES (NEW.owner, 0);
	UPDATE owner_files SET bytes = bytes + NEW.size WHERE owner = NEW.owner;
END;
CREATE TRIGGER files_bytes_delete AFTER DELETE ON files BEGIN
	UPDATE owner_files SET bytes = bytes - OLD.size WHERE owner = OLD.owner;
END;
