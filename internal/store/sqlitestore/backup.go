package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"
)

// Backup writes a consistent copy of the database at path to out, a new
// file, while a gateway may be using the database (reading and writing it
// from another process): VACUUM INTO reads the database in one read
// transaction, so the copy is the database as of one commit, and in WAL
// mode it neither blocks the gateway's writes nor waits for them. The copy
// is a plain SQLite file (no -wal to go with it) that Open takes as it is:
// restoring is stopping the gateway and putting the copy in place of the
// database (docs/deploy.md). out must not exist; it is created 0600.
func Backup(ctx context.Context, path, out string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("sqlitestore: backup: no database: %w", err)
	}
	// SQLite writes into an empty file it is given, keeping its mode: the
	// copy is never readable by others, not even for a moment, and O_EXCL
	// refuses a file that exists.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("sqlitestore: backup: %s exists; choose a new file", out)
	}
	if err != nil {
		return fmt.Errorf("sqlitestore: backup: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(out)
		return fmt.Errorf("sqlitestore: backup: %w", err)
	}
	o := options{busyTimeout: 30 * time.Second}
	db, err := sql.Open("sqlite", path+"?"+commonDSN(&o))
	if err != nil {
		os.Remove(out)
		return fmt.Errorf("sqlitestore: backup: open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", out); err != nil {
		os.Remove(out)
		return fmt.Errorf("sqlitestore: backup %s to %s: %w", path, out, err)
	}
	return nil
}
