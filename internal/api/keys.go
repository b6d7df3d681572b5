package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/comfyfleet/comfyfleet/internal/apikey"
	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// Limits of API keys.
const (
	// maxKeyName bounds a key's name, in characters.
	maxKeyName = 100
	// maxKeyScopes bounds the scopes of one key.
	maxKeyScopes = 32
	// maxKeysPerOwner bounds the keys one user holds that are not revoked.
	maxKeysPerOwner = 100
	// keyTouchEvery is how stale a key's stored last-used time may get: a
	// replica writes it at most once per interval per key, not once per
	// request.
	keyTouchEvery = time.Minute
)

// authenticate checks the bearer token of a request, a login JWT or an API
// key; query also accepts ?token= (the /ws upgrade).
func (s *Server) authenticate(r *http.Request, query bool) (*auth.Claims, error) {
	token, err := auth.RequestToken(r, query)
	if err != nil {
		return nil, err
	}
	if apikey.IsKey(token) {
		return s.verifyKey(r.Context(), token)
	}
	return s.deps.Auth.Verify(token)
}

// verifyKey checks an API key against its stored record: the record is
// read on every request, so a revocation holds at once on every replica.
// The owner is looked up in the configured users each time, so the key
// gets the owner's current role (never more: a "user" key of an admin has
// the user role) and stops working when the owner is removed.
func (s *Server) verifyKey(ctx context.Context, token string) (*auth.Claims, error) {
	id, secret, err := apikey.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", auth.ErrBadToken, err)
	}
	k, err := s.deps.Store.KeyGet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no API key %s", auth.ErrBadToken, id)
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !k.Matches(secret) {
		return nil, fmt.Errorf("%w: wrong secret for API key %s", auth.ErrBadToken, id)
	}
	if !k.Active(now) {
		return nil, fmt.Errorf("%w: API key %s is revoked or expired", auth.ErrBadToken, id)
	}
	u, ok := s.deps.Auth.User(k.Owner)
	if !ok {
		return nil, fmt.Errorf("%w: the owner of API key %s is no longer a user", auth.ErrBadToken, id)
	}
	c := &auth.Claims{Username: u.Username, Role: u.Role, KeyID: k.ID}
	switch {
	case slices.Equal(k.Scopes, []string{apikey.ScopeUser}):
		c.Role = auth.RoleUser
	case slices.Equal(k.Scopes, []string{apikey.ScopeAdmin}):
	default:
		c.Scopes = slices.Clone(k.Scopes)
	}
	if !k.ExpiresAt.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(k.ExpiresAt)
	}
	s.touchKey(ctx, k, now)
	return c, nil
}

// touchKey records a use of k when its stored last-used time is older than
// keyTouchEvery and no request on this replica has recorded one since.
func (s *Server) touchKey(ctx context.Context, k *apikey.Key, now time.Time) {
	if now.Sub(k.LastUsedAt) < keyTouchEvery || !s.keyUses.claim(k.ID, now) {
		return
	}
	if err := s.deps.Store.KeyTouch(ctx, &store.KeyTouchParams{ID: k.ID, Now: now}); err != nil {
		s.keyUses.forget(k.ID)
		s.log.WarnContext(ctx, "record API key use", "key", k.ID, "err", err)
	}
}

// keyUses remembers when this replica last recorded each key's use, so
// concurrent requests with one key write its last-used time once.
type keyUses struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// claim reports whether the caller should record a use of id at now, and
// if so notes it.
func (u *keyUses) claim(id string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.last[id]; ok && now.Sub(t) < keyTouchEvery {
		return false
	}
	if u.last == nil {
		u.last = make(map[string]time.Time)
	}
	if len(u.last) >= 4096 { // keep the map to the keys in use lately
		for id, t := range u.last {
			if now.Sub(t) >= keyTouchEvery {
				delete(u.last, id)
			}
		}
	}
	u.last[id] = now
	return true
}

// forget drops a claim whose write failed, so the next request retries.
func (u *keyUses) forget(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.last, id)
}

// RouteScope is the scope an API key needs for a route: "<resource>:read"
// for GET, "<resource>:write" for the other methods, where the resource is
// the first path segment after /api/ (or "metrics" for /metrics). Routes of
// the caller's own session (/api/auth/...) need none.
func RouteScope(method, pattern string) string {
	res := routeResource(pattern)
	if res == "" || res == "auth" {
		return ""
	}
	if method == http.MethodGet || method == http.MethodHead {
		return apikey.Scope(res, apikey.ActionRead)
	}
	return apikey.Scope(res, apikey.ActionWrite)
}

// routeResource is the resource of a route pattern: "tasks" for
// /api/tasks/{id}, "metrics" for /metrics.
func routeResource(pattern string) string {
	p := strings.TrimPrefix(pattern, "/api")
	p = strings.TrimPrefix(p, "/")
	res, _, _ := strings.Cut(p, "/")
	return res
}

// wsScope is the scope of the /ws stream: task events and the fleet's
// status.
var wsScope = apikey.Scope("tasks", apikey.ActionRead)

// Scopes lists every narrow scope a key may have: each resource of the
// route table, read and write, sorted.
func (s *Server) Scopes() []string {
	set := map[string]bool{wsScope: true}
	for _, rt := range s.Routes() {
		if rt.Access == Public {
			continue
		}
		if res := routeResource(rt.Pattern); res != "" && res != "auth" {
			set[apikey.Scope(res, apikey.ActionRead)] = true
			set[apikey.Scope(res, apikey.ActionWrite)] = true
		}
	}
	out := make([]string, 0, len(set))
	for sc := range set {
		out = append(out, sc)
	}
	slices.Sort(out)
	return out
}

// keyView is an API key as the API shows it: never its hash.
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
}

func (s *Server) makeKeyView(k *apikey.Key) keyView {
	status := "active"
	switch {
	case !k.RevokedAt.IsZero():
		status = "revoked"
	case !k.Active(s.now()):
		status = "expired"
	}
	return keyView{
		ID: k.ID, Name: k.Name, Owner: k.Owner, Scopes: k.Scopes, Prefix: apikey.Prefix + k.ID, Status: status,
		CreatedAt: formatTime(k.CreatedAt), ExpiresAt: timePtr(k.ExpiresAt),
		LastUsedAt: timePtr(k.LastUsedAt), RevokedAt: timePtr(k.RevokedAt),
	}
}

type createKeyRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt string   `json:"expiresAt"`
	Owner     string   `json:"owner"`
}

// createdKey is the answer to POST /api/keys: the only time the key's
// secret is shown.
type createdKey struct {
	keyView
	Key string `json:"key"`
}

// createKey is POST /api/keys.
func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req createKeyRequest
	if err := decodeJSONLimit(w, r, &req, loginBodyLimit); err != nil {
		return err
	}
	c := claims(r)
	owner := c.Username
	if req.Owner != "" && req.Owner != c.Username {
		if !c.IsAdmin() {
			return errorf(http.StatusForbidden, "forbidden", "Only an admin creates keys for other users.")
		}
		owner = req.Owner
	}
	u, ok := s.deps.Auth.User(owner)
	if !ok {
		return fieldError("owner", fmt.Sprintf("No user %q.", owner))
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || utf8.RuneCountInString(name) > maxKeyName {
		return fieldError("name", fmt.Sprintf("required, at most %d characters.", maxKeyName))
	}
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = []string{u.Role}
	}
	if err := s.checkScopes(c, u, scopes); err != nil {
		return err
	}
	now := s.now()
	var expires time.Time
	if req.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			return fieldError("expiresAt", "must be an RFC 3339 time, like 2030-01-01T00:00:00Z.")
		}
		if !t.After(now) {
			return fieldError("expiresAt", "must be in the future.")
		}
		expires = t.UTC()
	}
	if c.KeyID != "" && c.ExpiresAt != nil {
		// A key made with a key that expires does not outlive it.
		parent := c.ExpiresAt.UTC()
		switch {
		case expires.IsZero():
			expires = parent
		case expires.After(parent):
			return fieldError("expiresAt", "must not be later than the expiry of the key that creates it ("+parent.Format(time.RFC3339)+").")
		}
	}
	held, err := s.deps.Store.KeyList(r.Context(), &store.KeyListParams{Owner: owner})
	if err != nil {
		return err
	}
	if n := countUnrevoked(held); n >= maxKeysPerOwner {
		return errorf(http.StatusConflict, "too_many_keys", "%s holds %d keys, the most allowed; revoke one first.", owner, n)
	}
	k, token, err := apikey.New(owner, name, scopes, now, expires)
	if err != nil {
		return fmt.Errorf("make API key: %w", err)
	}
	if err := s.deps.Store.KeyInsert(r.Context(), k); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "API key created", "key", k.ID, "owner", owner, "by", c.Username, "scopes", scopes)
	return writeJSON(w, createdKey{keyView: s.makeKeyView(k), Key: token})
}

func countUnrevoked(ks []*apikey.Key) int {
	n := 0
	for _, k := range ks {
		if k.RevokedAt.IsZero() {
			n++
		}
	}
	return n
}

// checkScopes says whether the caller may give a key of owner these
// scopes: a role scope alone ("admin" only for an admin owner and caller),
// or narrow scopes of known resources. A caller that came with a narrow key
// may only pass on scopes it has itself.
func (s *Server) checkScopes(c *auth.Claims, owner auth.User, scopes []string) error {
	if len(scopes) > maxKeyScopes {
		return fieldError("scopes", fmt.Sprintf("At most %d scopes.", maxKeyScopes))
	}
	if len(scopes) == 1 && (scopes[0] == apikey.ScopeAdmin || scopes[0] == apikey.ScopeUser) {
		if scopes[0] == apikey.ScopeAdmin && (owner.Role != auth.RoleAdmin || !c.IsAdmin()) {
			return fieldError("scopes", `The "admin" scope needs an admin, as the key's owner and as its creator.`)
		}
		if c.Scopes != nil {
			return fieldError("scopes", "A key with narrow scopes can only create keys with some of its own scopes.")
		}
		return nil
	}
	if owner.Role == auth.RoleAdmin && !c.IsAdmin() {
		// A narrow key acts with its owner's role: minted by a caller held
		// below that role (an admin's "user" key), it would be an escalation.
		return fieldError("scopes", `A key held to the user role can only create "user" keys for an admin.`)
	}
	known := s.Scopes()
	for _, sc := range scopes {
		if sc == apikey.ScopeAdmin || sc == apikey.ScopeUser {
			return fieldError("scopes", fmt.Sprintf("The role scope %q stands alone, without other scopes.", sc))
		}
		if !slices.Contains(known, sc) {
			return fieldError("scopes", fmt.Sprintf("Unknown scope %q; use \"admin\", \"user\" or some of: %s.", sc, strings.Join(known, ", ")))
		}
		if !c.Allows(sc) {
			return fieldError("scopes", fmt.Sprintf("Your key lacks the scope %q, so it cannot give it.", sc))
		}
	}
	return nil
}

// listKeys is GET /api/keys: the caller's keys, or every user's for an
// admin (?owner= narrows to one).
func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	c := claims(r)
	owner := r.URL.Query().Get("owner")
	if !c.IsAdmin() {
		if owner != "" && owner != c.Username {
			return errorf(http.StatusForbidden, "forbidden", "Only an admin lists other users' keys.")
		}
		owner = c.Username
	}
	ks, err := s.deps.Store.KeyList(r.Context(), &store.KeyListParams{Owner: owner})
	if err != nil {
		return err
	}
	items := make([]keyView, len(ks))
	for i, k := range ks {
		items[i] = s.makeKeyView(k)
	}
	return writeJSON(w, map[string]any{"total": len(items), "items": items})
}

// revokeKey is DELETE /api/keys/{id}: the key stops working at once on
// every replica. Revoking a revoked key changes nothing.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	c, id := claims(r), r.PathValue("id")
	k, err := s.deps.Store.KeyGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !c.IsAdmin() && k.Owner != c.Username) {
		return errorf(http.StatusNotFound, "key_not_found", "No API key %s.", id)
	}
	if err != nil {
		return err
	}
	k, err = s.deps.Store.KeyRevoke(r.Context(), &store.KeyRevokeParams{ID: id, Now: s.now()})
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "API key revoked", "key", k.ID, "owner", k.Owner, "by", c.Username)
	// Its open /ws sessions end on every replica.
	data, _ := json.Marshal(event.KeyRevokedData{KeyID: k.ID}) // one string: cannot fail
	if err := s.deps.Store.Publish(r.Context(), event.Event{Type: event.TypeKeyRevoked, Data: data, Time: s.now().UnixMilli()}); err != nil {
		s.log.WarnContext(r.Context(), "publish key revocation", "key", k.ID, "err", err)
	}
	return writeJSON(w, s.makeKeyView(k))
}
