package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/comfyfleet/comfyfleet/internal/app"
)

// runBackup is "comfyfleet backup --out FILE": a consistent snapshot of
// the SQLite store of the gateway that the same --config, --data and
// environment describe, taken while it serves.
func runBackup(ctx context.Context, args []string) error {
	var out string
	cfg, err := loadConfigWith("backup", args, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "the snapshot's file (must not exist)")
	})
	if err != nil {
		return err
	}
	if out == "" {
		return errors.New(`backup: want "comfyfleet backup --out FILE [--config FILE] [--data DIR] [--set key=value ...]"`)
	}
	if err := app.Backup(ctx, cfg, out); err != nil {
		return err
	}
	fmt.Printf("Backed up %s to %s.\n", cfg.Store.Path, out)
	return nil
}
