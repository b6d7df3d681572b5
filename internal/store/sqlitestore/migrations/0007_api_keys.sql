-- 0007: API keys. A key's secret is never stored: hash is the hex SHA-256
-- of it. scopes is a JSON array of strings. Times are Unix ms, 0 for "not
-- set" (no expiry, never used, not revoked).

CREATE TABLE api_keys (
	id           TEXT    PRIMARY KEY,
	owner        TEXT    NOT NULL,
	name         TEXT    NOT NULL,
	scopes       TEXT    NOT NULL,
	hash         TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL,
	revoked_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_owner_created ON api_keys (owner, created_at DESC, id DESC);
