package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// redacted replaces secrets in Public.
const redacted = "<redacted>"

// Public is the config as GET /api/config shows it: auth.secret and every
// passwordHash are "<redacted>" when set, the password of store.url is
// masked, and auth.adminPassword never appears. Empty lists are [] rather
// than null. Sending it back in
// PUT /api/config is accepted: unchanged values, redacted ones included,
// are not changes.
func (c Config) Public() Config {
	p := c.clone()
	if p.Auth.Secret != "" {
		p.Auth.Secret = redacted
	}
	p.Auth.AdminPassword = ""
	for i := range p.Auth.Users {
		if p.Auth.Users[i].PasswordHash != "" {
			p.Auth.Users[i].PasswordHash = redacted
		}
	}
	p.Store.URL = redactURL(p.Store.URL)
	if p.Servers == nil {
		p.Servers = []Server{}
	}
	if p.Auth.Users == nil {
		p.Auth.Users = []User{}
	}
	return p
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	return u.Redacted()
}

// isLive reports whether a key may change while the gateway runs (through
// PUT /api/config). Everything else needs a restart.
func isLive(key string) bool {
	switch key {
	case "servers",
		"healthCheck.interval", "healthCheck.timeout", "healthCheck.failureThreshold",
		"healthCheck.drainAfterFailures", "healthCheck.drainCooldown", "healthCheck.probeWorkflow", "healthCheck.probeTimeout",
		"scheduler.taskTimeout", "scheduler.maxTaskTimeout", "scheduler.maxAttempts", "scheduler.priorityAging",
		"scheduler.placement", "scheduler.warmWindow", "scheduler.interruptGrace", "scheduler.prefetch",
		"files.maxUploadBytes", "files.maxOutputBytes", "files.outputTimeout",
		"server.publicBaseUrl", "server.maxBodyBytes",
		"limits.maxNodes", "limits.maxTaskBytes", "limits.maxPendingPerUser", "limits.maxStoredBytesPerUser",
		"retention.tasks", "retention.files", "retention.interval", "retention.batch":
		return true
	}
	return false
}

// IsReset reports whether a PUT /api/config body is {"reset":true}: drop
// every runtime override and go back to the start-up config (file,
// environment, flags). The app then persists an empty runtime document and
// applies ApplyRuntime(base, nil), base being its start-up config.
func IsReset(patch []byte) bool {
	var body map[string]json.RawMessage
	if json.Unmarshal(patch, &body) != nil || len(body) != 1 {
		return false
	}
	return bytes.Equal(bytes.TrimSpace(body["reset"]), []byte("true"))
}

// Merge applies a PUT /api/config body to c and returns the validated
// result. Only the sections present change: "servers" replaces the list;
// the keys of healthCheck, scheduler, files and server merge one by one;
// null or 0 means the default. Live keys are servers, healthCheck.*,
// scheduler.*, files.maxUploadBytes, files.maxOutputBytes,
// files.outputTimeout, server.publicBaseUrl, server.maxBodyBytes,
// limits.* and retention.* (docs/configuration.md lists them, and a test holds the two
// together). Another key (store, dataDir, server.listen, the other server
// settings, auth.*, ...) is accepted only with its current value (so the body of
// GET /api/config may be sent back); a new value is a *FieldError saying it
// needs a restart. An unknown key is a *FieldError too, and so is "reset"
// next to other keys (see IsReset). The keys whose values changed join
// RuntimeKeys, and Runtime gives the document to persist.
func (c Config) Merge(patch []byte) (Config, error) {
	return c.merge(patch, false)
}

// ApplyRuntime overlays the persisted runtime document doc (from Runtime)
// on the start-up config c, and validates the result. Every key of doc
// goes into RuntimeKeys. An empty doc returns c without runtime keys.
func ApplyRuntime(c Config, doc []byte) (Config, error) {
	c = c.clone()
	c.RuntimeKeys = nil
	if len(bytes.TrimSpace(doc)) == 0 {
		return c, nil
	}
	next, err := c.merge(doc, true)
	if err != nil {
		return Config{}, fmt.Errorf("apply runtime config: %w", err)
	}
	return next, nil
}

// merge applies patch; recordAll records every live key given rather than
// only those whose value changed.
func (c Config) merge(patch []byte, recordAll bool) (Config, error) {
	x, err := decodeJSON(patch)
	if err != nil {
		return Config{}, fmt.Errorf("config patch: %w", err)
	}
	obj, ok := x.(map[string]any)
	if !ok {
		return Config{}, &FieldError{Message: "the config patch must be a JSON object"}
	}
	if _, ok := obj["reset"]; ok {
		return Config{}, &FieldError{Field: "reset", Message: `must be sent alone, as {"reset":true}`}
	}
	next := c.clone()
	m := merger{recordAll: recordAll}
	pub := c.Public()
	if err := m.mergeStruct(reflect.ValueOf(&next).Elem(), reflect.ValueOf(pub), "", obj); err != nil {
		return Config{}, err
	}
	next.RuntimeKeys = sortedUnion(next.RuntimeKeys, m.keys)
	keepOutputDirs(next.Servers, c.Servers)
	next.WithDefaults()
	if err := next.Validate(); err != nil {
		return Config{}, err
	}
	return next, nil
}

// keepOutputDirs gives each server of next the outputDir of the server
// with the same id in prev: the API does not carry it (see Server.OutputDir).
func keepOutputDirs(next, prev []Server) {
	for i := range next {
		for _, p := range prev {
			if p.ID == next[i].ID {
				next[i].OutputDir = p.OutputDir
			}
		}
	}
}

// merger walks a patch over a config.
type merger struct {
	recordAll bool
	// keys are the live keys set.
	keys []string
}

// mergeStruct merges the keys of obj into the struct dst; pub is the same
// struct as Public shows it, to compare keys that cannot change.
func (m *merger) mergeStruct(dst, pub reflect.Value, path string, obj map[string]any) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		p := joinPath(path, k)
		f, ok := fieldByTag(dst, "json", k, false)
		if !ok {
			errs = append(errs, &FieldError{Field: p, Message: "unknown field"})
			continue
		}
		pf, _ := fieldByTag(pub, "json", k, false)
		if f.Kind() == reflect.Struct {
			sub, ok := obj[k].(map[string]any)
			if !ok {
				errs = append(errs, &FieldError{Field: p, Message: "must be an object"})
				continue
			}
			errs = append(errs, m.mergeStruct(f, pf, p, sub))
			continue
		}
		errs = append(errs, m.mergeLeaf(f, pf, p, obj[k]))
	}
	return errors.Join(errs...)
}

// mergeLeaf sets one key: a live one takes the new value; another must keep
// its current (public) value.
func (m *merger) mergeLeaf(dst, pub reflect.Value, path string, x any) error {
	v := reflect.New(dst.Type()).Elem()
	if err := decodeValue(v, path, "json", x); err != nil {
		return err
	}
	if !isLive(path) {
		if same(v, pub) {
			return nil
		}
		if path == "runtimeOverrides" || path == "runtimeOverridesIgnored" {
			return &FieldError{Field: path, Message: `is read-only; send {"reset":true} to drop the runtime overrides`}
		}
		return &FieldError{Field: path, Message: "cannot change while running; set it in the config file or environment and restart"}
	}
	if m.recordAll || !same(v, dst) {
		m.keys = append(m.keys, path)
	}
	dst.Set(v)
	return nil
}

// same is reflect.DeepEqual, except that nil and empty lists are equal.
func same(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func sortedUnion(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// Runtime is the runtime document to persist after Merge: the keys of
// RuntimeKeys with their values, as JSON ({} when there are none).
// ApplyRuntime reads it back at the next start.
func (c Config) Runtime() []byte {
	doc := map[string]any{}
	root := reflect.ValueOf(c)
	for _, key := range c.RuntimeKeys {
		v, ok := lookup(root, "json", key, false)
		if !ok {
			continue
		}
		setPath(doc, key, v.Interface())
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic("config: marshal runtime document: " + err.Error()) // the types cannot fail
	}
	return b
}

// setPath sets the dotted key in the nested map doc.
func setPath(doc map[string]any, key string, v any) {
	head, rest, nested := strings.Cut(key, ".")
	if !nested {
		doc[head] = v
		return
	}
	sub, ok := doc[head].(map[string]any)
	if !ok {
		sub = map[string]any{}
		doc[head] = sub
	}
	setPath(sub, rest, v)
}
