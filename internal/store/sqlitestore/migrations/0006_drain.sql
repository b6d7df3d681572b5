-- 0006: automatic drain. An instance whose runs fail in a row for its own
-- reasons (a crash, out of memory, CUDA errors, timeouts) is disabled by the
-- gateway, with a reason, and enabled again by a probe after a cooldown.
ALTER TABLE instances ADD COLUMN run_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN drain_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN drained_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN auto_drained INTEGER NOT NULL DEFAULT 0;
