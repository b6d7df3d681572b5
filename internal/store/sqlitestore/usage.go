package sqlitestore

import (
	"context"
	"database/sql"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// usageGetSQL reads the counts the triggers keep: queue_owners (0002) and
// owner_files (0003).
const usageGetSQL = `SELECT
	coalesce((SELECT pending FROM queue_owners WHERE owner = :owner), 0),
	coalesce((SELECT bytes FROM owner_files WHERE owner = :owner), 0)`

// UsageGet returns an owner's pending tasks and stored bytes.
func (s *Store) UsageGet(ctx context.Context, p *store.UsageGetParams) (store.Usage, error) {
	ctx, err := s.readGate.enter(ctx)
	if err != nil {
		return store.Usage{}, wrap(err, "get usage of %s", p.Owner)
	}
	defer s.readGate.leave()
	var u store.Usage
	err = s.rs.usageGet.QueryRowContext(ctx, sql.Named("owner", p.Owner)).Scan(&u.Pending, &u.StoredBytes)
	return u, wrap(err, "get usage of %s", p.Owner)
}
