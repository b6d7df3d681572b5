package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/comfyfleet/comfyfleet/internal/api"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

type keyView struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Owner      string   `json:"owner"`
	Scopes     []string `json:"scopes"`
	Prefix     string   `json:"prefix"`
	Status     string   `json:"status"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  *string  `json:"expiresAt"`
	LastUsedAt *string  `json:"lastUsedAt"`
	RevokedAt  *string  `json:"revokedAt"`
	Key        string   `json:"key"`
}

// createKey makes an API key through the API and returns it with its secret.
func createKey(e *apptest.Env, token string, body map[string]any) keyView {
	e.T.Helper()
	r := e.Do("POST", "/api/keys", token, body)
	if r.Status != http.StatusOK {
		e.T.Fatalf("POST /api/keys %v: %d %s", body, r.Status, r.Raw)
	}
	var k keyView
	r.Into(e.T, &k)
	if !strings.HasPrefix(k.Key, "cfk_"+k.ID+"_") {
		e.T.Fatalf("created key %q, want cfk_%s_<secret>", k.Key, k.ID)
	}
	return k
}

func listKeys(e *apptest.Env, token, query string) []keyView {
	e.T.Helper()
	r := e.Do("GET", "/api/keys"+query, token, nil)
	if r.Status != http.StatusOK {
		e.T.Fatalf("GET /api/keys%s: %d %s", query, r.Status, r.Raw)
	}
	var page struct {
		Total int       `json:"total"`
		Items []keyView `json:"items"`
	}
	r.Into(e.T, &page)
	if page.Total != len(page.Items) {
		e.T.Errorf("total %d, items %d", page.Total, len(page.Items))
	}
	return page.Items
}

// wantStatus fails unless r has the status and (when code is set) the
// envelope's error code.
func wantStatus(t *testing.T, what string, r *apptest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || (code != "" && r.Body.Error != code) {
		t.Errorf("%s: %d %s, want %d %s", what, r.Status, r.Raw, status, code)
	}
}

// redisConfig points a gateway at a Redis prefix of its own (or at a
// shared one, for replicas).
func redisConfig(url, prefix string) func(*config.Config) {
	return func(c *config.Config) { c.Store.Driver, c.Store.URL, c.Store.Prefix = "redis", url, prefix }
}

// TestAPIKeys: a key made by a user works as a bearer token within its
// scopes, is listed without its secret, records its last use, and stops
// working the moment it is revoked; the secret is stored nowhere. Both
// stores.
func TestAPIKeys(t *testing.T) {
	t.Parallel()
	bothStores(t, func(t *testing.T, driver string) {
		var url, prefix string
		configure := func(*config.Config) {}
		if driver == "redis" {
			url = redistest.URL(t)
			prefix = redistest.Prefix(t, url)
			configure = redisConfig(url, prefix)
		}
		e := apptest.Start(t, apptest.Options{Instances: 1, Configure: configure})
		alice := e.Login(apptest.User, apptest.UserPass)
		bob := e.Login(apptest.User2, apptest.User2Pass)
		admin := e.Login(apptest.AdminUser, apptest.AdminPass)

		k := createKey(e, alice, map[string]any{"name": "ci", "scopes": []string{"tasks:read", "tasks:write"}})
		if k.Owner != apptest.User || k.Status != "active" || k.LastUsedAt != nil || k.ExpiresAt != nil {
			t.Errorf("created key %+v", k)
		}

		// Within its scopes it is alice.
		waitAlive(e, admin)
		task := submit(e, k.Key, map[string]any{"workflow": basic("keys/a")})
		if task.Owner != apptest.User {
			t.Errorf("task submitted with alice's key is owned by %q", task.Owner)
		}
		waitStatus(e, k.Key, task.ID, "completed", 20*time.Second)
		r := e.Do("GET", "/api/auth/me", k.Key, nil)
		wantStatus(t, "me with a key", r, http.StatusOK, "")
		if !strings.Contains(string(r.Body.Data), `"username":"alice","role":"user"`) {
			t.Errorf("me with alice's key = %s", r.Body.Data)
		}
		// Outside them it is refused, and so are a wrong secret and a
		// key of another form.
		wantStatus(t, "files with a tasks key", e.Do("GET", "/api/files", k.Key, nil), http.StatusForbidden, "insufficient_scope")
		wantStatus(t, "keys with a tasks key", e.Do("POST", "/api/keys", k.Key, map[string]any{"name": "x"}), http.StatusForbidden, "insufficient_scope")
		wrong := k.Key[:len(k.Key)-4] + "AAAA"
		if wrong == k.Key {
			wrong = k.Key[:len(k.Key)-4] + "BBBB"
		}
		wantStatus(t, "wrong secret", e.Do("GET", "/api/tasks", wrong, nil), http.StatusUnauthorized, "invalid_token")
		wantStatus(t, "malformed key", e.Do("GET", "/api/tasks", "cfk_nonsense", nil), http.StatusUnauthorized, "invalid_token")

		// Listed without the secret, with its last use; others don't see it.
		keys := listKeys(e, alice, "")
		if len(keys) != 1 || keys[0].ID != k.ID || keys[0].Key != "" || keys[0].LastUsedAt == nil || keys[0].Prefix != "cfk_"+k.ID {
			t.Errorf("alice's keys = %+v, want %s with a last use and no secret", keys, k.ID)
		}
		if got := listKeys(e, bob, ""); len(got) != 0 {
			t.Errorf("bob sees keys %+v", got)
		}
		wantStatus(t, "bob lists alice's keys", e.Do("GET", "/api/keys?owner=alice", bob, nil), http.StatusForbidden, "forbidden")
		wantStatus(t, "bob revokes alice's key", e.Do("DELETE", "/api/keys/"+k.ID, bob, nil), http.StatusNotFound, "key_not_found")

		// Scopes: never more than the owner's role or the creator's key.
		for _, tt := range []struct {
			what  string
			token string
			body  map[string]any
		}{
			{"a user's admin key", alice, map[string]any{"name": "x", "scopes": []string{"admin"}}},
			{"an unknown scope", alice, map[string]any{"name": "x", "scopes": []string{"tasks:delete"}}},
			{"a role among scopes", alice, map[string]any{"name": "x", "scopes": []string{"user", "tasks:read"}}},
			{"no name", alice, map[string]any{"scopes": []string{"tasks:read"}}},
			{"an expiry in the past", alice, map[string]any{"name": "x", "expiresAt": "2020-01-01T00:00:00Z"}},
			{"a bad expiry", alice, map[string]any{"name": "x", "expiresAt": "tomorrow"}},
		} {
			wantStatus(t, tt.what, e.Do("POST", "/api/keys", tt.token, tt.body), http.StatusBadRequest, "invalid_field")
		}
		wantStatus(t, "a key for another user", e.Do("POST", "/api/keys", alice, map[string]any{"name": "x", "owner": "bob"}),
			http.StatusForbidden, "forbidden")
		narrow := createKey(e, alice, map[string]any{"name": "keys", "scopes": []string{"keys:write", "tasks:read"}})
		wantStatus(t, "a narrow key widening itself", e.Do("POST", "/api/keys", narrow.Key, map[string]any{"name": "x", "scopes": []string{"user"}}),
			http.StatusBadRequest, "invalid_field")
		wantStatus(t, "a narrow key passing on a scope it lacks", e.Do("POST", "/api/keys", narrow.Key, map[string]any{"name": "x", "scopes": []string{"files:read"}}),
			http.StatusBadRequest, "invalid_field")
		createKey(e, narrow.Key, map[string]any{"name": "child", "scopes": []string{"tasks:read"}})
		// A key that expires makes keys that expire no later.
		hour := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		brief := createKey(e, alice, map[string]any{"name": "brief", "scopes": []string{"keys:write", "tasks:read"}, "expiresAt": hour.Format(time.RFC3339)})
		wantStatus(t, "a child outliving its key", e.Do("POST", "/api/keys", brief.Key, map[string]any{"name": "x", "scopes": []string{"tasks:read"},
			"expiresAt": hour.Add(time.Hour).Format(time.RFC3339)}), http.StatusBadRequest, "invalid_field")
		if child := createKey(e, brief.Key, map[string]any{"name": "brief child", "scopes": []string{"tasks:read"}}); child.ExpiresAt == nil || *child.ExpiresAt != *brief.ExpiresAt {
			t.Errorf("child of an expiring key expires at %v, want its key's %v", child.ExpiresAt, *brief.ExpiresAt)
		}

		// An admin's "user" key has the user role; its "admin" key does not.
		userKey := createKey(e, admin, map[string]any{"name": "as user", "scopes": []string{"user"}})
		wantStatus(t, "config with an admin's user key", e.Do("GET", "/api/config", userKey.Key, nil), http.StatusForbidden, "forbidden")
		// Nor can it mint a narrow key, which would carry its owner's admin role.
		wantStatus(t, "a narrow key minted by an admin's user key", e.Do("POST", "/api/keys", userKey.Key, map[string]any{"name": "x", "scopes": []string{"config:read"}}),
			http.StatusBadRequest, "invalid_field")
		stillUser := createKey(e, userKey.Key, map[string]any{"name": "still a user", "scopes": []string{"user"}})
		wantStatus(t, "config with the user key's child", e.Do("GET", "/api/config", stillUser.Key, nil), http.StatusForbidden, "forbidden")
		adminKey := createKey(e, admin, map[string]any{"name": "ops", "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
		if len(adminKey.Scopes) != 1 || adminKey.Scopes[0] != "admin" || adminKey.ExpiresAt == nil {
			t.Errorf("admin's default key %+v, want scope admin and an expiry", adminKey)
		}
		wantStatus(t, "config with an admin key", e.Do("GET", "/api/config", adminKey.Key, nil), http.StatusOK, "")
		forBob := createKey(e, admin, map[string]any{"name": "for bob", "owner": "bob"})
		if forBob.Owner != "bob" || forBob.Scopes[0] != "user" {
			t.Errorf("admin's key for bob = %+v", forBob)
		}
		if got := listKeys(e, admin, "?owner=bob"); len(got) != 1 || got[0].ID != forBob.ID {
			t.Errorf("admin lists bob's keys: %+v", got)
		}
		if got := listKeys(e, admin, ""); len(got) != 9 {
			t.Errorf("admin lists %d keys, want every user's 9", len(got))
		}

		// Revoked: refused at once, listed as revoked.
		r = e.Do("DELETE", "/api/keys/"+k.ID, alice, nil)
		wantStatus(t, "revoke", r, http.StatusOK, "")
		wantStatus(t, "a revoked key", e.Do("GET", "/api/tasks", k.Key, nil), http.StatusUnauthorized, "invalid_token")
		if got := listKeys(e, alice, ""); got[len(got)-1].Status != "revoked" || got[len(got)-1].RevokedAt == nil {
			t.Errorf("alice's revoked key is listed as %+v", got[len(got)-1])
		}

		// The secrets are stored nowhere.
		secrets := []string{k.Key, narrow.Key, userKey.Key, adminKey.Key, forBob.Key}
		if driver == "sqlite" {
			assertNotInFiles(t, e.DataDir, secrets)
		} else {
			assertNotInRedis(t, url, prefix, secrets)
		}
	})
}

// secretOf is the part of a key after its id.
func secretOf(key string) string { return key[strings.LastIndex(key[:29], "_")+1:] }

func assertNotInFiles(t *testing.T, dir string, keys []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if bytes.Contains(b, []byte(secretOf(k))) {
				t.Errorf("%s holds the secret of a key", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func assertNotInRedis(t *testing.T, url, prefix string, keys []string) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	names, err := rdb.Keys(ctx, prefix+"apikey*").Result()
	if err != nil || len(names) == 0 {
		t.Fatalf("keys under %s: %v, %v", prefix, names, err)
	}
	for _, name := range names {
		dump, err := rdb.Dump(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.Contains(dump, secretOf(k)) {
				t.Errorf("%s holds the secret of a key", name)
			}
		}
	}
}

// TestAPIKeyRevokedOnEveryReplica: two gateways on one Redis; a key made
// on one works on the other, and once revoked on one it is refused by both
// on the very next request.
func TestAPIKeyRevokedOnEveryReplica(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	prefix := redistest.Prefix(t, url)
	a := apptest.Start(t, apptest.Options{Instances: 1, Configure: redisConfig(url, prefix)})
	b := apptest.Start(t, apptest.Options{Sims: a.Sims, Configure: redisConfig(url, prefix)})
	alice := a.Login(apptest.User, apptest.UserPass)
	k := createKey(a, alice, map[string]any{"name": "replicas"})
	var sessions []*apptest.WS
	for _, e := range []*apptest.Env{a, b} {
		wantStatus(t, "the key on "+e.URL(), e.Do("GET", "/api/tasks", k.Key, nil), http.StatusOK, "")
		ws := e.DialWS(k.Key)
		ws.WaitFor(10*time.Second, "global_status", func(m apptest.Message) bool { return m.Type == "global_status" })
		sessions = append(sessions, ws)
	}
	wantStatus(t, "revoke on a", a.Do("DELETE", "/api/keys/"+k.ID, alice, nil), http.StatusOK, "")
	for _, e := range []*apptest.Env{b, a} {
		wantStatus(t, "the revoked key on "+e.URL(), e.Do("GET", "/api/tasks", k.Key, nil), http.StatusUnauthorized, "invalid_token")
	}
	// The key's open /ws sessions end on both replicas.
	for i, ws := range sessions {
		ws.WaitClosed(10*time.Second, fmt.Sprintf("the revoked key's session on replica %d", i))
	}
}

// TestEveryRouteNeedsScope walks the route table: an admin's key with one
// narrow scope is refused with insufficient_scope on every route that
// needs another scope, and /ws needs tasks:read.
func TestEveryRouteNeedsScope(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	k := createKey(e, admin, map[string]any{"name": "monitor", "scopes": []string{"monitor:read"}})
	checked := 0
	for _, rt := range e.App().Routes() {
		scope := api.RouteScope(rt.Method, rt.Pattern)
		if rt.Access == api.Public || scope == "" || scope == "monitor:read" {
			continue
		}
		path := strings.NewReplacer("{id}", "x").Replace(rt.Pattern)
		r := e.Do(rt.Method, path, k.Key, []byte(`{}`))
		wantStatus(t, rt.Method+" "+rt.Pattern, r, http.StatusForbidden, "insufficient_scope")
		checked++
	}
	if checked < 15 {
		t.Errorf("checked %d routes, want the whole table", checked)
	}
	wantStatus(t, "monitor with its scope", e.Do("GET", "/api/monitor/overview", k.Key, nil), http.StatusOK, "")
	if got := e.DialWSStatus(k.Key); got != http.StatusForbidden {
		t.Errorf("/ws with a monitor key: %d, want 403", got)
	}
}
