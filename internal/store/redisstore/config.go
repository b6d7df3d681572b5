package redisstore

import (
	"context"
	"strconv"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
)

// ConfigGet returns the persisted runtime config document.
func (s *Store) ConfigGet(ctx context.Context) ([]byte, error) {
	doc, err := s.rdb.Get(ctx, s.keys.config()).Bytes()
	if err != nil {
		return nil, wrap(err, "get config")
	}
	return doc, nil
}

// ConfigPut replaces the persisted runtime config document.
func (s *Store) ConfigPut(ctx context.Context, doc []byte) error {
	return wrap(s.rdb.Set(ctx, s.keys.config(), doc, 0).Err(), "put config")
}

// leaseKeyGrace is how long a lease key outlives its lease before Redis
// deletes it. Deleting it only collects leases nobody released: an expired
// lease and a missing one are both free. It also bounds how far a caller's
// Now may lag behind Redis's clock without a live lease disappearing.
const leaseKeyGrace = time.Hour

// LeaseAcquire takes or renews a named lease and reports whether p.Holder
// holds it. Expiry is judged against p.Now, never Redis's clock.
func (s *Store) LeaseAcquire(ctx context.Context, p *store.LeaseParams) (bool, error) {
	keyTTL := max(p.TTL, 0) + leaseKeyGrace
	n, err := acquireLeaseScript.Run(ctx, s.rdb, []string{s.keys.lease(p.Name)},
		p.Holder, msArg(p.Now), msArg(p.Now.Add(p.TTL)), strconv.FormatInt(keyTTL.Milliseconds(), 10)).Int()
	if err != nil {
		return false, wrap(err, "acquire lease %s", p.Name)
	}
	return n == 1, nil
}

// LeaseRelease gives a lease up if holder holds it.
func (s *Store) LeaseRelease(ctx context.Context, name, holder string) error {
	err := releaseLeaseScript.Run(ctx, s.rdb, []string{s.keys.lease(name)}, holder).Err()
	return wrap(err, "release lease %s", name)
}
