package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"

	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// subscriberBuffer is how many events a subscriber (the push hub, the
// dispatcher) may fall behind before it loses some: generous, because
// bursts (a replica adopting a dead one's instances) are short and events
// are small.
const subscriberBuffer = 16384

// openStore opens the configured store.
func openStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	switch cfg.Store.Driver {
	case "sqlite", "":
		sync := sqlitestore.SyncNormal
		if cfg.Store.Sync == "full" {
			sync = sqlitestore.SyncFull
		}
		st, err := sqlitestore.Open(ctx, cfg.Store.Path, sqlitestore.WithSync(sync),
			sqlitestore.WithSubscriberBuffer(subscriberBuffer))
		if err != nil {
			return nil, fmt.Errorf("app: open sqlite store: %w", err)
		}
		return st, nil
	case "redis":
		st, err := redisstore.Open(ctx, cfg.Store.URL, redisstore.WithPrefix(cfg.Store.Prefix),
			redisstore.WithSubscriberBuffer(subscriberBuffer))
		if err != nil {
			return nil, fmt.Errorf("app: open redis store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("app: unknown store driver %q", cfg.Store.Driver)
}

// ResetRuntimeConfig deletes the runtime config saved by PUT /api/config
// in the store cfg names (cfg defaulted and validated, as for New), for a
// gateway that is stopped: the next start uses the start-up config alone.
// It returns where the document was. A SQLite database that does not exist
// is an error rather than a new empty one: the data dir is probably not the
// gateway's.
func ResetRuntimeConfig(ctx context.Context, cfg config.Config) (where string, err error) {
	where = "the Redis key " + cfg.Store.Prefix + "config at " + redactedURL(cfg.Store.URL)
	if cfg.Store.Driver != "redis" {
		where = cfg.Store.Path
		if _, err := os.Stat(where); err != nil {
			return "", fmt.Errorf("app: no SQLite database at %s (pass the --data or --config of the gateway): %w", where, err)
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := st.ConfigPut(ctx, []byte("{}")); err != nil {
		return "", fmt.Errorf("app: reset runtime config: %w", err)
	}
	return where, nil
}

// redactedURL is a URL with its password masked.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<redacted>"
	}
	return u.Redacted()
}

// warnStore logs the store's production warnings (Redis persistence and eviction).
func (a *App) warnStore(ctx context.Context) {
	if rs, ok := a.store.(*redisstore.Store); ok {
		for _, w := range rs.CheckProductionSettings(ctx) {
			a.log.WarnContext(ctx, "redis is not set up for production", "warning", w)
		}
	}
}

// applyRuntime overlays the runtime config persisted by PUT /api/config on
// the file's config (see docs/configuration.md for the precedence). A
// document that no longer validates with the start-up config is not fatal:
// it is ignored, with a warning in the log and in GET /api/config
// (Config.RuntimeIgnored), so a bad saved setting can never keep the
// gateway down.
func (a *App) applyRuntime(ctx context.Context, cfg config.Config) (config.Config, error) {
	doc, err := a.store.ConfigGet(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("app: read runtime config: %w", err)
	}
	next, err := config.ApplyRuntime(cfg, doc)
	if err == nil {
		return next, nil
	}
	a.log.WarnContext(ctx, "runtime config ignored: it no longer validates; PUT /api/config replaces it",
		"err", err, "runtime_config", string(doc))
	cfg.RuntimeIgnored = "The runtime config saved by PUT /api/config was not applied: " + err.Error() +
		`. The next PUT /api/config replaces it; {"reset":true} deletes it.`
	return cfg, nil
}

// configService is the live config behind GET/PUT /api/config.
type configService struct {
	st  store.ConfigStore
	app *App

	// base is the start-up config (defaults, file, environment, flags)
	// that {"reset":true} returns to.
	base config.Config

	// mu guards cur and serialises updates.
	mu  sync.Mutex
	cur config.Config
}

func newConfigService(base, cur config.Config, st store.ConfigStore, a *App) *configService {
	return &configService{st: st, app: a, base: base, cur: cur}
}

// Current returns the live config.
func (c *configService) Current() config.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Update merges a PUT body, validates, persists and applies it live.
func (c *configService) Update(ctx context.Context, patch []byte) (config.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := c.next(patch)
	if err != nil {
		return c.cur, err
	}
	if err := next.Validate(); err != nil {
		return c.cur, err
	}
	if err := c.st.ConfigPut(ctx, next.Runtime()); err != nil {
		return c.cur, fmt.Errorf("app: persist config: %w", err)
	}
	next.RuntimeIgnored = "" // the document saved above replaces the ignored one
	a := c.app
	if _, _, err := a.fleet.Set(ctx, next.Instances()); err != nil {
		return c.cur, err
	}
	a.checker.SetSettings(healthSettings(next))
	a.dispatch.SetSettings(dispatchSettings(next))
	a.pruner.SetSettings(retentionSettings(next))
	c.cur = next
	a.log.InfoContext(ctx, "config updated", "instances", len(next.Instances()))
	return next, nil
}

// next is the config a PUT body asks for: a merge, or the start-up config
// for {"reset":true}.
func (c *configService) next(patch []byte) (config.Config, error) {
	if config.IsReset(patch) {
		return config.ApplyRuntime(c.base, nil)
	}
	return c.cur.Merge(patch)
}
