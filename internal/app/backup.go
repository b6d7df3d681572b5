package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// Backup writes a consistent snapshot of the SQLite store that cfg names
// to out (a new file), while the gateway serves (sqlitestore.Backup). The
// Redis store is backed up by Redis itself (docs/deploy.md).
func Backup(ctx context.Context, cfg config.Config, out string) error {
	if cfg.Store.Driver == "redis" {
		return errors.New("app: backup: the store is Redis; back it up with Redis's own snapshots " +
			"(BGSAVE and a copy of its dump.rdb, or its appendonly directory): see docs/deploy.md")
	}
	if out == "" {
		return errors.New("app: backup: --out FILE is required")
	}
	if err := sqlitestore.Backup(ctx, cfg.Store.Path, out); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return nil
}
