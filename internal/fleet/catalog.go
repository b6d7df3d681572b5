package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// ObjectInfoReader reads an instance's GET /object_info; *comfy.Client is one.
type ObjectInfoReader interface {
	ObjectInfo(ctx context.Context) ([]byte, error)
}

// catalogs caches decoded catalogues by hash, and the index of the fleet's
// current ones. A hash names its content, so a cached catalogue never goes
// stale; the cache only forgets the ones no instance has any more.
type catalogs struct {
	// mu guards the fields below.
	mu       sync.Mutex
	byHash   map[string]*cachedCatalog
	stored   map[string]bool // hashes known to be in the store
	index    *catalog.Index
	indexKey string
	// hashOf is each instance's catalogue hash as the store said at
	// hashesAt (zero: read it again); see Index.
	hashOf   map[string]string
	hashesAt time.Time
	// hashesGen counts forgetHashes: hashes read before the last one are
	// not kept.
	hashesGen uint64
}

// hashesFresh bounds how long Index trusts the catalogue hashes it read
// last, in case a catalog_changed event from another replica was lost.
const hashesFresh = 5 * time.Second

// hashes returns the cached catalogue hashes when they were read within
// hashesFresh of now (nil when they must be read again), and the
// generation to give setHashes with what is read instead.
func (c *catalogs) hashes(now time.Time) (map[string]string, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hashOf == nil || now.Sub(c.hashesAt) >= hashesFresh || now.Before(c.hashesAt) {
		return nil, c.hashesGen
	}
	return c.hashOf, c.hashesGen
}

// setHashes keeps h, read at at, unless forgetHashes ran since gen was
// taken: h may then be older than the change that called it.
func (c *catalogs) setHashes(h map[string]string, at time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.hashesGen {
		c.hashOf, c.hashesAt = h, at
	}
}

// forgetHashes makes the next Index read the hashes from the store.
func (c *catalogs) forgetHashes() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hashOf = nil
	c.hashesGen++
}

// cachedCatalog is a decoded catalogue and its summary.
type cachedCatalog struct {
	cat     *catalog.Catalog
	summary catalog.Summary
}

// maxSpareCatalogs is how many catalogues no instance has any more the
// cache may keep before it forgets them.
const maxSpareCatalogs = 8

func (c *catalogs) get(hash string) *cachedCatalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byHash[hash]
}

func (c *catalogs) put(hash string, cat *catalog.Catalog) *cachedCatalog {
	e := &cachedCatalog{cat: cat, summary: cat.Summary(hash)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byHash == nil {
		c.byHash, c.stored = map[string]*cachedCatalog{}, map[string]bool{}
	}
	c.byHash[hash] = e
	c.stored[hash] = true
	return e
}

func (c *catalogs) isStored(hash string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored[hash]
}

// keep forgets the catalogues not in inUse once there are too many spares.
func (c *catalogs) keep(inUse map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byHash) <= len(inUse)+maxSpareCatalogs {
		return
	}
	for h := range c.byHash {
		if !inUse[h] {
			delete(c.byHash, h)
			delete(c.stored, h)
		}
	}
}

// RefreshCatalog reads an instance's node catalogue from its /object_info,
// stores it unless its hash is stored already, and records the hash on the
// instance's state. It returns the hash. Call it when the gateway connects
// to an instance (first connect, reconnect, restart) and when an operator
// asks: a changed model folder or custom node set shows up only then. On
// error the instance keeps the catalogue it had.
func (f *Fleet) RefreshCatalog(ctx context.Context, src ObjectInfoReader, id string) (string, error) {
	body, err := src.ObjectInfo(ctx)
	if err != nil {
		return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
	}
	cat, err := catalog.Parse(body)
	if err != nil {
		return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
	}
	data := cat.Encode()
	hash := catalog.HashOf(data)
	old, err := f.store.InstanceGet(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
	}
	if !f.cat.isStored(hash) {
		created, err := f.store.CatalogPut(ctx, &store.CatalogPutParams{Hash: hash, Data: data, Now: time.Now()})
		if err != nil {
			return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
		}
		if created {
			f.log.InfoContext(ctx, "new node catalogue", "instance_id", id, "catalog_hash", hash,
				"node_classes", len(cat.Classes), "bytes", len(data))
		}
	}
	f.cat.put(hash, cat)
	if _, err := f.Update(ctx, &store.InstanceUpdateParams{ID: id, CatalogHash: &hash}); err != nil {
		return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
	}
	if old.CatalogHash != hash {
		f.cat.forgetHashes()
		if err := f.SyncCaps(ctx, []string{id}); err != nil {
			return "", fmt.Errorf("fleet: refresh catalog of %s: %w", id, err)
		}
		// The other replicas forget the hashes they keep (CatalogChanged).
		ev, err := event.CatalogChanged(id)
		if err == nil {
			err = f.store.Publish(ctx, ev)
		}
		if err != nil {
			f.log.WarnContext(ctx, "publish catalog_changed failed", "instance_id", id, "err", err)
		}
	}
	return hash, nil
}

// catalogOf returns the catalogue with that hash, from the cache or the
// store; nil (no error) for "" or a hash the store does not have.
func (f *Fleet) catalogOf(ctx context.Context, hash string) (*cachedCatalog, error) {
	if hash == "" {
		return nil, nil
	}
	if e := f.cat.get(hash); e != nil {
		return e, nil
	}
	rec, err := f.store.CatalogGet(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: get catalog %s: %w", hash, err)
	}
	c, err := rec.Catalog()
	if err != nil {
		return nil, fmt.Errorf("fleet: catalog %s: %w", hash, err)
	}
	return f.cat.put(hash, c), nil
}

// Catalog returns a configured instance's catalogue and its hash; a nil
// catalogue when it has not been read yet, store.ErrNotFound for an id that
// is not configured.
func (f *Fleet) Catalog(ctx context.Context, id string) (*catalog.Catalog, string, error) {
	if _, ok := f.Lookup(id); !ok {
		return nil, "", store.ErrNotFound
	}
	st, err := f.Get(ctx, id)
	if err != nil {
		return nil, "", fmt.Errorf("fleet: get %s: %w", id, err)
	}
	e, err := f.catalogOf(ctx, st.CatalogHash)
	if e == nil || err != nil {
		return nil, "", err
	}
	return e.cat, st.CatalogHash, nil
}

// Index returns the catalogue index of the configured instances with their
// labels. It is rebuilt only when an instance's catalogue or labels changed,
// so calling it for every submitted task is cheap.
//
// The instances' catalogue hashes are read from the store once and then
// kept, not read for every submit: a catalogue this replica reads anew
// drops them at once, one another replica reads arrives as a
// catalog_changed event (CatalogChanged), and they are read again after
// hashesFresh in any case.
func (f *Fleet) Index(ctx context.Context) (*catalog.Index, error) {
	return f.index(ctx, false)
}

// CatalogChanged says an instance's catalogue hash changed (the
// catalog_changed event, from any replica): the next Index reads the
// hashes from the store.
func (f *Fleet) CatalogChanged() { f.cat.forgetHashes() }

// index is Index; fresh reads the hashes from the store whatever is kept.
func (f *Fleet) index(ctx context.Context, fresh bool) (*catalog.Index, error) {
	now := time.Now()
	hashOf, gen := f.cat.hashes(now)
	if fresh || hashOf == nil {
		states, err := f.store.InstanceList(ctx)
		if err != nil {
			return nil, fmt.Errorf("fleet: list states: %w", err)
		}
		hashOf = make(map[string]string, len(states))
		for _, st := range states {
			hashOf[st.ID] = st.CatalogHash
		}
		f.cat.setHashes(hashOf, now, gen)
	}
	list := f.Instances()
	var key strings.Builder
	for _, in := range list {
		fmt.Fprintf(&key, "%s\x00%s\x00%v\x01", in.ID, hashOf[in.ID], sortedLabels(in.Labels))
	}
	f.cat.mu.Lock()
	ix, cached := f.cat.index, f.cat.indexKey == key.String()
	f.cat.mu.Unlock()
	if cached && ix != nil {
		return ix, nil
	}
	members, err := f.members(ctx, list, hashOf)
	if err != nil {
		return nil, err
	}
	ix = catalog.NewIndex(members)
	f.cat.mu.Lock()
	f.cat.index, f.cat.indexKey = ix, key.String()
	f.cat.mu.Unlock()
	return ix, nil
}

func (f *Fleet) members(ctx context.Context, list []instance.Instance, hashOf map[string]string) ([]catalog.Member, error) {
	inUse := map[string]bool{}
	members := make([]catalog.Member, 0, len(list))
	for _, in := range list {
		m := catalog.Member{InstanceID: in.ID, Labels: in.Labels}
		e, err := f.catalogOf(ctx, hashOf[in.ID])
		if err != nil {
			return nil, err
		}
		if e != nil {
			m.Hash, m.Catalog = hashOf[in.ID], e.cat
			inUse[m.Hash] = true
		}
		members = append(members, m)
	}
	f.cat.keep(inUse)
	return members, nil
}

// Check validates a prompt against the catalogues of the configured
// instances whose labels match req.Requires (catalog.Index.Check).
func (f *Fleet) Check(ctx context.Context, req *catalog.Request) (*catalog.Verdict, error) {
	ix, err := f.Index(ctx)
	if err != nil {
		return nil, err
	}
	return ix.Check(req), nil
}

// Admission is the fleet's answer to a submitted prompt: the verdict of
// Check and, when it can run, its placement requirement with the
// instances able to run it, for TaskInsert.
type Admission struct {
	Verdict *catalog.Verdict
	// Cap is nil when the verdict has a problem.
	Cap *store.CapParams
}

// Admit checks a prompt (Check) and, when it can run, computes its
// placement requirement and the configured instances able to run it
// (catalog.Index.Capable), both with one view of the fleet.
func (f *Fleet) Admit(ctx context.Context, req *catalog.Request) (*Admission, error) {
	ix, err := f.Index(ctx)
	if err != nil {
		return nil, err
	}
	a := &Admission{Verdict: ix.Check(req)}
	if a.Verdict.Problem != nil {
		return a, nil
	}
	r := ix.Requirement(req)
	a.Cap = &store.CapParams{Key: r.Key, Data: r.Data, Instances: ix.Capable(r)}
	return a, nil
}

// SyncCaps recomputes which stored placement requirements each of the
// given instances can run, from their current catalogues and labels, and
// records it (store.CapStore). The fleet calls it when an instance's
// catalogue or labels change and for instances added to the config; a
// claim by the instance sees the new answer at once. Calls are serialised,
// so the last one wins with the newest view.
func (f *Fleet) SyncCaps(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	ix, err := f.index(ctx, true)
	if err != nil {
		return err
	}
	caps, err := f.store.CapList(ctx)
	if err != nil {
		return fmt.Errorf("fleet: sync caps: %w", err)
	}
	can := make(map[string][]string, len(ids))
	cannot := make(map[string][]string, len(ids))
	for _, c := range caps {
		r, err := catalog.DecodeRequirement(c.Data)
		if err != nil {
			f.log.WarnContext(ctx, "stored placement requirement unreadable", "cap_key", c.Key, "err", err)
			continue
		}
		capable := ix.Capable(r)
		for _, id := range ids {
			if slices.Contains(capable, id) {
				can[id] = append(can[id], c.Key)
			} else {
				cannot[id] = append(cannot[id], c.Key)
			}
		}
	}
	for _, id := range ids {
		if err := f.store.CapSetInstance(ctx, &store.CapSetInstanceParams{Instance: id, Can: can[id], Cannot: cannot[id]}); err != nil {
			return fmt.Errorf("fleet: sync caps of %s: %w", id, err)
		}
	}
	f.log.DebugContext(ctx, "placement requirements synced", "instances", ids, "requirements", len(caps))
	return nil
}

// Reroute is asked when instanceID refused a task's prompt at validation:
// if another configured instance is recorded as able to run the task's
// requirement, instanceID is recorded as unable (its catalogue was stale,
// or the check could not tell) and Reroute reports true, so the task goes
// back to the queue for the others; false means the failure stands.
func (f *Fleet) Reroute(ctx context.Context, capKey, instanceID string) (bool, error) {
	if capKey == "" {
		return false, nil
	}
	c, err := f.store.CapGet(ctx, capKey)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fleet: reroute: %w", err)
	}
	other := false
	for _, id := range c.Instances {
		if _, ok := f.Lookup(id); ok && id != instanceID {
			other = true
		}
	}
	if !other {
		return false, nil
	}
	if err := f.store.CapSetInstance(ctx, &store.CapSetInstanceParams{Instance: instanceID, Cannot: []string{capKey}}); err != nil {
		return false, fmt.Errorf("fleet: reroute: %w", err)
	}
	f.log.InfoContext(ctx, "instance refused a prompt others can run; it no longer takes that requirement",
		"instance_id", instanceID, "cap_key", capKey)
	return true, nil
}

// summary is the catalogue summary of a view; nil when not read yet (or
// unreadable: the view is still worth showing).
func (f *Fleet) summary(ctx context.Context, hash string) *catalog.Summary {
	e, err := f.catalogOf(ctx, hash)
	if err != nil {
		f.log.WarnContext(ctx, "read catalog failed", "catalog_hash", hash, "err", err)
	}
	if e == nil {
		return nil
	}
	s := e.summary
	return &s
}

func sortedLabels(l map[string]string) []string {
	keys := slices.Sorted(maps.Keys(l))
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return keys
}
