package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

func instanceCases() []testCase {
	return []testCase{
		{"UpdateCreates", testInstanceUpdateCreates},
		{"UpdateAllFields", testInstanceUpdateAllFields},
		{"UpdatePartial", testInstanceUpdatePartial},
		{"UpdateConcurrent", testInstanceUpdateConcurrent},
		{"GetMissing", testInstanceGetMissing},
		{"ListSorted", testInstanceListSorted},
		{"Delete", testInstanceDelete},
	}
}

func ptr[T any](v T) *T { return &v }

// update applies p and returns the new state.
func update(t *testing.T, s store.Store, p store.InstanceUpdateParams) instance.State {
	t.Helper()
	st, err := s.InstanceUpdate(t.Context(), &p)
	must(t, "InstanceUpdate", err)
	return st
}

// getInstance reads an instance that must exist.
func getInstance(t *testing.T, s store.Store, id string) instance.State {
	t.Helper()
	st, err := s.InstanceGet(t.Context(), id)
	must(t, "InstanceGet", err)
	return st
}

func testInstanceUpdateCreates(t *testing.T, s store.Store) {
	got := update(t, s, store.InstanceUpdateParams{ID: "127.0.0.1:8001"})
	want := instance.State{ID: "127.0.0.1:8001", Enabled: true}
	diff(t, "created instance", want, got)
	diff(t, "InstanceGet", want, getInstance(t, s, "127.0.0.1:8001"))

	drained := update(t, s, store.InstanceUpdateParams{ID: "127.0.0.1:8002", Enabled: ptr(false), Alive: ptr(true)})
	diff(t, "created with fields", instance.State{ID: "127.0.0.1:8002", Alive: true}, drained)
}

func testInstanceUpdateAllFields(t *testing.T, s store.Store) {
	dev := instance.Device{Name: "cuda:0 NVIDIA RTX 4090", Type: "cuda", VRAMTotal: 25757220864, VRAMFree: 1 << 30, ComfyUIVersion: "0.3.40"}
	got := update(t, s, store.InstanceUpdateParams{
		ID: "10.0.0.2:8188", Enabled: ptr(false), Alive: ptr(true), Busy: ptr(true),
		CurrentTaskID: ptr("task-1"), LastHeartbeat: ptr(at(3).Add(250e6)), LastError: ptr("timeout"),
		QueueRemaining: ptr(4), Failures: ptr(2), Device: &dev, LoadedCheckpoint: ptr("sdxl.safetensors"),
		CatalogHash: ptr("3f2a"), RunFailures: ptr(3), DrainReason: ptr("3 runs failed in a row"),
		DrainedAt: ptr(at(4).Add(5e5)), AutoDrained: ptr(true),
	})
	want := instance.State{
		ID: "10.0.0.2:8188", Enabled: false, Alive: true, Busy: true, CurrentTaskID: "task-1",
		LastHeartbeat: at(3).Add(250e6), LastError: "timeout", QueueRemaining: 4, Failures: 2,
		Device: dev, LoadedCheckpoint: "sdxl.safetensors", CatalogHash: "3f2a",
		RunFailures: 3, DrainReason: "3 runs failed in a row", DrainedAt: at(4), AutoDrained: true,
	}
	diff(t, "updated instance", want, got)
	read := getInstance(t, s, want.ID)
	diff(t, "InstanceGet", want, read)
	checkUTC(t, "LastHeartbeat", read.LastHeartbeat, read.DrainedAt)
	// Back in service: the drain's fields are cleared.
	back := update(t, s, store.InstanceUpdateParams{ID: want.ID, Enabled: ptr(true), RunFailures: ptr(0),
		DrainReason: ptr(""), DrainedAt: ptr(time.Time{}), AutoDrained: ptr(false)})
	want.Enabled, want.RunFailures, want.DrainReason, want.DrainedAt, want.AutoDrained = true, 0, "", time.Time{}, false
	diff(t, "re-enabled instance", want, back)
}

// testInstanceUpdatePartial checks that each writer changes only its fields.
func testInstanceUpdatePartial(t *testing.T, s store.Store) {
	const id = "127.0.0.1:8001"
	dev := instance.Device{Name: "cpu", Type: "cpu"}
	steps := []struct {
		name string
		p    store.InstanceUpdateParams
		edit func(*instance.State)
	}{
		{"health up", store.InstanceUpdateParams{Alive: ptr(true), LastHeartbeat: ptr(at(1)), Failures: ptr(0), Device: &dev},
			func(st *instance.State) { st.Alive, st.LastHeartbeat, st.Device = true, at(1), dev }},
		{"admin drains", store.InstanceUpdateParams{Enabled: ptr(false)},
			func(st *instance.State) { st.Enabled = false }},
		{"dispatcher runs", store.InstanceUpdateParams{Busy: ptr(true), CurrentTaskID: ptr("t1"), LoadedCheckpoint: ptr("m.ckpt")},
			func(st *instance.State) { st.Busy, st.CurrentTaskID, st.LoadedCheckpoint = true, "t1", "m.ckpt" }},
		{"probe fails", store.InstanceUpdateParams{Failures: ptr(1), LastError: ptr("refused"), QueueRemaining: ptr(3)},
			func(st *instance.State) { st.Failures, st.LastError, st.QueueRemaining = 1, "refused", 3 }},
		{"dispatcher done", store.InstanceUpdateParams{Busy: ptr(false), CurrentTaskID: ptr("")},
			func(st *instance.State) { st.Busy, st.CurrentTaskID = false, "" }},
		{"catalogue read", store.InstanceUpdateParams{CatalogHash: ptr("9c1e")},
			func(st *instance.State) { st.CatalogHash = "9c1e" }},
		{"nothing", store.InstanceUpdateParams{}, func(*instance.State) {}},
	}
	want := instance.State{ID: id, Enabled: true}
	update(t, s, store.InstanceUpdateParams{ID: id})
	for _, st := range steps {
		st.p.ID = id
		st.edit(&want)
		diff(t, "after "+st.name, want, update(t, s, st.p))
		diff(t, "InstanceGet after "+st.name, want, getInstance(t, s, id))
	}
}

// testInstanceUpdateConcurrent runs writers of disjoint fields at once; none
// may overwrite the others' fields.
func testInstanceUpdateConcurrent(t *testing.T, s store.Store) {
	const id, rounds = "127.0.0.1:8001", 50
	writers := []store.InstanceUpdateParams{
		{ID: id, Alive: ptr(true)},
		{ID: id, Enabled: ptr(false)},
		{ID: id, Busy: ptr(true), CurrentTaskID: ptr("t9")},
		{ID: id, QueueRemaining: ptr(7)},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(writers)*rounds)
	for _, p := range writers {
		wg.Go(func() {
			for range rounds {
				if _, err := s.InstanceUpdate(t.Context(), &p); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("InstanceUpdate: %v", err)
	}
	want := instance.State{ID: id, Alive: true, Enabled: false, Busy: true, CurrentTaskID: "t9", QueueRemaining: 7}
	diff(t, "state after concurrent writers", want, getInstance(t, s, id))
}

func testInstanceGetMissing(t *testing.T, s store.Store) {
	_, err := s.InstanceGet(t.Context(), "127.0.0.1:9999")
	wantErr(t, "InstanceGet missing", err, store.ErrNotFound)
}

func testInstanceListSorted(t *testing.T, s store.Store) {
	empty, err := s.InstanceList(t.Context())
	must(t, "InstanceList", err)
	if len(empty) != 0 {
		t.Fatalf("InstanceList on empty store = %v, want none", empty)
	}
	for _, id := range []string{"10.0.0.2:8001", "10.0.0.1:8002", "10.0.0.1:8001"} {
		update(t, s, store.InstanceUpdateParams{ID: id, Alive: ptr(id == "10.0.0.1:8002")})
	}
	got, err := s.InstanceList(t.Context())
	must(t, "InstanceList", err)
	want := []instance.State{
		{ID: "10.0.0.1:8001", Enabled: true},
		{ID: "10.0.0.1:8002", Enabled: true, Alive: true},
		{ID: "10.0.0.2:8001", Enabled: true},
	}
	diff(t, "InstanceList", want, got)
}

func testInstanceDelete(t *testing.T, s store.Store) {
	update(t, s, store.InstanceUpdateParams{ID: "a:1", Enabled: ptr(false), Alive: ptr(true)})
	update(t, s, store.InstanceUpdateParams{ID: "b:1"})
	must(t, "InstanceDelete", s.InstanceDelete(t.Context(), "a:1"))
	_, err := s.InstanceGet(t.Context(), "a:1")
	wantErr(t, "InstanceGet deleted", err, store.ErrNotFound)
	got, err := s.InstanceList(t.Context())
	must(t, "InstanceList", err)
	diff(t, "InstanceList after delete", []instance.State{{ID: "b:1", Enabled: true}}, got)
	wantErr(t, "InstanceDelete missing", s.InstanceDelete(t.Context(), "a:1"), store.ErrNotFound)

	again := update(t, s, store.InstanceUpdateParams{ID: "a:1"})
	diff(t, "re-created instance", instance.State{ID: "a:1", Enabled: true}, again)
}
