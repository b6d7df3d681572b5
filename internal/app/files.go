package app

import (
	"context"
	"fmt"

	"github.com/comfyfleet/comfyfleet/internal/blob"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// openBlob opens the file store files.driver names: a directory, or an
// S3-compatible object store whose bucket must exist and whose
// credentials come from the environment or a credentials file.
func (a *App) openBlob(ctx context.Context, cfg config.Config) (blob.Store, error) {
	if cfg.Files.Driver == config.FilesS3 {
		s := cfg.Files.S3
		creds, err := blob.S3Credentials(s.CredentialsFile, s.Profile)
		if err != nil {
			return nil, fmt.Errorf("app: open file store: %w", err)
		}
		st, err := blob.NewS3(ctx, blob.S3Options{
			Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, Credentials: creds,
		})
		if err != nil {
			return nil, fmt.Errorf("app: open file store: %w", err)
		}
		a.log.InfoContext(ctx, "files are kept in an S3 bucket", "endpoint", s.Endpoint, "bucket", s.Bucket, "prefix", s.Prefix, "serve", s.Serve)
		return st, nil
	}
	if cfg.Store.Driver == "redis" {
		a.log.WarnContext(ctx, "files are kept on this replica's disk: other replicas serve them only if files.dir is one directory shared by all; set files.driver to s3",
			"files_dir", cfg.Files.Dir)
	}
	var opts []blob.DiskOption
	if cfg.Store.Sync != "full" {
		opts = append(opts, blob.NoSync()) // the same durability as the store
	}
	d, err := blob.NewDisk(cfg.Files.Dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("app: open file store: %w", err)
	}
	return d, nil
}

// fileLinks is what makes GET /files/... redirect to the object store:
// the S3 store when files.s3.serve is "redirect", else nil (the gateway
// streams the bytes).
func fileLinks(cfg config.Config, b blob.Store) blob.Presigner {
	l, ok := b.(blob.Presigner)
	if !ok || cfg.Files.Driver != config.FilesS3 || cfg.Files.S3.Serve != config.ServeRedirect {
		return nil
	}
	return l
}
