package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/apikey"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func keyCases() []testCase {
	return []testCase{
		{"InsertGet", testKeyInsertGet},
		{"List", testKeyList},
		{"Revoke", testKeyRevoke},
		{"Touch", testKeyTouch},
	}
}

func newKey(t *testing.T, owner, name string, created time.Time) *apikey.Key {
	t.Helper()
	k, _, err := apikey.New(owner, name, []string{"tasks:read", "tasks:write"}, created, time.Time{})
	must(t, "apikey.New", err)
	return k
}

func testKeyInsertGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey(t, "alice", "ci runner ✓", at(1).Add(1500*time.Microsecond))
	k.ExpiresAt = at(3600)
	must(t, "KeyInsert", s.KeyInsert(ctx, k))
	got, err := s.KeyGet(ctx, k.ID)
	must(t, "KeyGet", err)
	want := *k
	want.CreatedAt = at(1).Add(time.Millisecond) // truncated to the millisecond
	if diff := cmp.Diff(&want, got, diffOpts); diff != "" {
		t.Errorf("KeyGet mismatch (-want +got):\n%s", diff)
	}
	wantErr(t, "KeyInsert duplicate", s.KeyInsert(ctx, k), store.ErrConflict)
	_, err = s.KeyGet(ctx, "000000000000000000000000")
	wantErr(t, "KeyGet unknown", err, store.ErrNotFound)
}

func testKeyList(t *testing.T, s store.Store) {
	ctx := t.Context()
	a1 := newKey(t, "alice", "one", at(1))
	b1 := newKey(t, "bob", "bob's", at(2))
	a2 := newKey(t, "alice", "two", at(3))
	for _, k := range []*apikey.Key{a1, b1, a2} {
		must(t, "KeyInsert", s.KeyInsert(ctx, k))
	}
	ids := func(ks []*apikey.Key) []string {
		out := make([]string, len(ks))
		for i, k := range ks {
			out[i] = k.ID
		}
		return out
	}
	for _, tt := range []struct {
		owner string
		want  []*apikey.Key
	}{
		{"alice", []*apikey.Key{a2, a1}},
		{"bob", []*apikey.Key{b1}},
		{"carol", nil},
		{"", []*apikey.Key{a2, b1, a1}},
	} {
		got, err := s.KeyList(ctx, &store.KeyListParams{Owner: tt.owner})
		must(t, "KeyList", err)
		if diff := cmp.Diff(ids(tt.want), ids(got), diffOpts); diff != "" {
			t.Errorf("KeyList(%q) ids (-want +got):\n%s", tt.owner, diff)
		}
	}
	got, err := s.KeyList(ctx, &store.KeyListParams{Owner: "bob"})
	must(t, "KeyList", err)
	if len(got) != 1 || got[0].Name != "bob's" || got[0].Hash != b1.Hash || len(got[0].Scopes) != 2 {
		t.Errorf("KeyList(bob) = %+v, want the whole record of %+v", got, b1)
	}
}

func testKeyRevoke(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey(t, "alice", "one", at(1))
	must(t, "KeyInsert", s.KeyInsert(ctx, k))
	got, err := s.KeyRevoke(ctx, &store.KeyRevokeParams{ID: k.ID, Now: at(10)})
	must(t, "KeyRevoke", err)
	if !got.RevokedAt.Equal(at(10)) || got.ID != k.ID || got.Owner != "alice" {
		t.Errorf("KeyRevoke = %+v, want revoked at %v", got, at(10))
	}
	got, err = s.KeyRevoke(ctx, &store.KeyRevokeParams{ID: k.ID, Now: at(20)})
	must(t, "KeyRevoke again", err)
	if !got.RevokedAt.Equal(at(10)) {
		t.Errorf("second KeyRevoke: RevokedAt = %v, want the first %v", got.RevokedAt, at(10))
	}
	stored, err := s.KeyGet(ctx, k.ID)
	must(t, "KeyGet", err)
	if !stored.RevokedAt.Equal(at(10)) || stored.Active(at(11)) {
		t.Errorf("KeyGet after revoke: RevokedAt = %v, active %v", stored.RevokedAt, stored.Active(at(11)))
	}
	_, err = s.KeyRevoke(ctx, &store.KeyRevokeParams{ID: "000000000000000000000000", Now: at(10)})
	wantErr(t, "KeyRevoke unknown", err, store.ErrNotFound)
}

func testKeyTouch(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := newKey(t, "alice", "one", at(1))
	must(t, "KeyInsert", s.KeyInsert(ctx, k))
	for _, tt := range []struct {
		now, want time.Time
	}{{at(5), at(5)}, {at(3), at(5)}, {at(9), at(9)}} {
		must(t, "KeyTouch", s.KeyTouch(ctx, &store.KeyTouchParams{ID: k.ID, Now: tt.now}))
		got, err := s.KeyGet(ctx, k.ID)
		must(t, "KeyGet", err)
		if !got.LastUsedAt.Equal(tt.want) {
			t.Errorf("after KeyTouch(%v): LastUsedAt = %v, want %v", tt.now, got.LastUsedAt, tt.want)
		}
	}
	wantErr(t, "KeyTouch unknown", s.KeyTouch(ctx, &store.KeyTouchParams{ID: "000000000000000000000000", Now: at(1)}), store.ErrNotFound)
}
