package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func capCases() []testCase {
	return []testCase{
		{"InsertStoresOnce", testCapInsertStoresOnce},
		{"GetMissing", testCapGetMissing},
		{"SetInstance", testCapSetInstance},
		{"ClaimOnlyCapable", testCapClaimOnlyCapable},
		{"ClaimFairShare", testCapClaimFairShare},
		{"ClaimWarm", testCapClaimWarm},
		{"ClaimAfterChange", testCapClaimAfterChange},
		{"RequeueKeepsCap", testCapRequeueKeepsCap},
	}
}

// capOf is a requirement runnable on instances.
func capOf(key string, instances ...string) *store.CapParams {
	return &store.CapParams{Key: key, Data: []byte(`{"prompt":{"1":{"class":"` + key + `"}}}`), Instances: instances}
}

// testCapInsertStoresOnce: the first task of a requirement stores it with
// its instances; later tasks of it change neither.
func testCapInsertStoresOnce(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Cap: capOf("k1", "i1", "i2"), Now: at(1)})
	if tk.CapKey != "k1" || get(t, s, tk.ID).CapKey != "k1" {
		t.Errorf("CapKey = %q, stored %q; want k1", tk.CapKey, get(t, s, tk.ID).CapKey)
	}
	insert(t, s, store.TaskInsertParams{Cap: &store.CapParams{Key: "k1", Data: []byte(`{}`), Instances: []string{"i3"}}, Now: at(2)})
	insert(t, s, store.TaskInsertParams{Cap: capOf("k2"), Now: at(3)})
	got, err := s.CapGet(t.Context(), "k1")
	must(t, "CapGet", err)
	diff(t, "CapGet", &store.Cap{Key: "k1", Data: capOf("k1").Data, Instances: []string{"i1", "i2"}, CreatedAt: at(1)}, got)
	checkUTC(t, "CapGet", got.CreatedAt)
	got, err = s.CapGet(t.Context(), "k2")
	must(t, "CapGet k2", err)
	if len(got.Instances) != 0 {
		t.Errorf("k2 instances = %v, want none", got.Instances)
	}
	list, err := s.CapList(t.Context())
	must(t, "CapList", err)
	var keys []string
	for _, c := range list {
		keys = append(keys, c.Key)
		if string(c.Data) != string(capOf(c.Key).Data) {
			t.Errorf("CapList %s data = %s", c.Key, c.Data)
		}
	}
	diff(t, "CapList keys", []string{"k1", "k2"}, keys)
	plain := insert(t, s, store.TaskInsertParams{Now: at(4)})
	if plain.CapKey != "" || get(t, s, plain.ID).CapKey != "" {
		t.Errorf("a task without requirement has CapKey %q", get(t, s, plain.ID).CapKey)
	}
}

func testCapGetMissing(t *testing.T, s store.Store) {
	_, err := s.CapGet(t.Context(), "nope")
	wantErr(t, "CapGet missing", err, store.ErrNotFound)
}

// testCapSetInstance: Can and Cannot change only the keys they name, and
// keys that are not stored are not recorded.
func testCapSetInstance(t *testing.T, s store.Store) {
	insert(t, s, store.TaskInsertParams{Cap: capOf("k1", "i1"), Now: at(1)})
	insert(t, s, store.TaskInsertParams{Cap: capOf("k2", "i1"), Now: at(1)})
	must(t, "CapSetInstance", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{
		Instance: "i2", Can: []string{"k1", "k2", "unknown"}}))
	must(t, "CapSetInstance", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{
		Instance: "i1", Cannot: []string{"k2"}}))
	for key, want := range map[string][]string{"k1": {"i1", "i2"}, "k2": {"i2"}} {
		got, err := s.CapGet(t.Context(), key)
		must(t, "CapGet", err)
		diff(t, "instances of "+key, want, got.Instances)
	}
	if _, err := s.CapGet(t.Context(), "unknown"); err == nil {
		t.Errorf("CapSetInstance stored an unknown key")
	}
	must(t, "CapSetInstance with nothing", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{Instance: "i3"}))
}

// claimOn claims for an instance; "" when nothing can run there.
func claimOn(t *testing.T, s store.Store, instance string, now time.Time) string {
	t.Helper()
	tk, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: instance, LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: now})
	if err != nil {
		wantErr(t, "TaskClaim on "+instance, err, store.ErrNotFound)
		return ""
	}
	return tk.ID
}

// testCapClaimOnlyCapable: an instance claims the tasks without a
// requirement and those it can run, in queue order, and passes over the
// others however long they wait.
func testCapClaimOnlyCapable(t *testing.T, s store.Store) {
	var bOnly []string
	for i := range 5 {
		bOnly = append(bOnly, insert(t, s, store.TaskInsertParams{Cap: capOf("sdxl", "b"), Now: at(i)}).ID)
	}
	both := insert(t, s, store.TaskInsertParams{Cap: capOf("sd15", "a", "b"), Now: at(10)}).ID
	anyone := insert(t, s, store.TaskInsertParams{Now: at(11)}).ID
	none := insert(t, s, store.TaskInsertParams{Cap: capOf("flux"), Now: at(12)}).ID
	if got := claimOn(t, s, "a", at(20)); got != both {
		t.Errorf("a claimed %s, want the first task it can run %s", got, both)
	}
	if got := claimOn(t, s, "a", at(21)); got != anyone {
		t.Errorf("a claimed %s, want the task without requirement %s", got, anyone)
	}
	_, err := s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "a", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(22)})
	wantErr(t, "TaskClaim with nothing a can run", err, store.ErrNoneRunnable)
	for i, id := range bOnly {
		if got := claimOn(t, s, "b", at(30+i)); got != id {
			t.Errorf("b claim %d = %s, want %s", i, got, id)
		}
	}
	if got := claimOn(t, s, "b", at(40)); got != "" {
		t.Errorf("b claimed %s, want nothing (%s has no capable instance)", got, none)
	}
	if p := position(t, s, none); p != 1 {
		t.Errorf("the task nobody can run is at position %d, want 1: it waits", p)
	}
	finish(t, s, none, task.StatusPending, task.StatusCancelled, at(41))
	_, err = s.TaskClaim(t.Context(), &store.TaskClaimParams{InstanceID: "b", LeaseOwner: replicaA, LeaseTTL: leaseTTL, Now: at(42)})
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoneRunnable) {
		t.Errorf("TaskClaim on an empty queue = %v, want ErrNotFound and not ErrNoneRunnable", err)
	}
}

// testCapClaimFairShare: fair share is between the owners that have a
// task the instance can run; an owner whose tasks only another instance
// runs does not hold the turn.
func testCapClaimFairShare(t *testing.T, s store.Store) {
	alice := insert(t, s, store.TaskInsertParams{Owner: "alice", Cap: capOf("x", "b"), Now: at(0)}).ID
	bob1 := insert(t, s, store.TaskInsertParams{Owner: "bob", Cap: capOf("y", "a", "b"), Now: at(1)}).ID
	bob2 := insert(t, s, store.TaskInsertParams{Owner: "bob", Cap: capOf("z", "a"), Now: at(2)}).ID
	carol := insert(t, s, store.TaskInsertParams{Owner: "carol", Now: at(3)}).ID
	// alice goes first by name but a cannot run her task.
	if got := claimOn(t, s, "a", at(10)); got != bob1 {
		t.Errorf("a claimed %s, want bob's first %s", got, bob1)
	}
	if got := claimOn(t, s, "a", at(11)); got != carol {
		t.Errorf("a claimed %s, want carol's %s (none running, bob has one)", got, carol)
	}
	if got := claimOn(t, s, "b", at(12)); got != alice {
		t.Errorf("b claimed %s, want alice's %s", got, alice)
	}
	if got := claimOn(t, s, "b", at(13)); got != "" {
		t.Errorf("b claimed %s, want nothing: only a runs z", got)
	}
	if got := claimOn(t, s, "a", at(14)); got != bob2 {
		t.Errorf("a claimed %s, want %s", got, bob2)
	}
}

// testCapClaimWarm: warm placement picks among the tasks the instance can
// run, over all their requirements.
func testCapClaimWarm(t *testing.T, s store.Store) {
	head := insert(t, s, store.TaskInsertParams{Cap: capOf("p", "a"), Checkpoints: []string{"x.ckpt"}, Now: at(0)}).ID
	warmOther := insert(t, s, store.TaskInsertParams{Cap: capOf("q", "b"), Checkpoints: []string{"y.ckpt"}, Now: at(1)}).ID
	warmMine := insert(t, s, store.TaskInsertParams{Cap: capOf("r", "a"), Checkpoints: []string{"y.ckpt"}, Now: at(2)}).ID
	p := store.TaskClaimParams{InstanceID: "a", Checkpoint: "y.ckpt", WarmWindow: time.Minute, Now: at(10)}
	if got := claimWith(t, s, p); got != warmMine {
		t.Errorf("warm claim on a took %s, want %s (not %s, which a cannot run)", got, warmMine, warmOther)
	}
	if got := claimWith(t, s, p); got != head {
		t.Errorf("warm claim on a took %s, want the head %s", got, head)
	}
	p.InstanceID = "b"
	if got := claimWith(t, s, p); got != warmOther {
		t.Errorf("claim on b took %s, want %s", got, warmOther)
	}
}

// testCapClaimAfterChange: CapSetInstance takes effect on the next claim:
// a pending task moves to the instance that gained the capability.
func testCapClaimAfterChange(t *testing.T, s store.Store) {
	tk := insert(t, s, store.TaskInsertParams{Cap: capOf("k", "a"), Now: at(0)}).ID
	must(t, "CapSetInstance", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{Instance: "a", Cannot: []string{"k"}}))
	if got := claimOn(t, s, "a", at(1)); got != "" {
		t.Errorf("a claimed %s after losing the capability", got)
	}
	must(t, "CapSetInstance", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{Instance: "b", Can: []string{"k"}}))
	if got := claimOn(t, s, "b", at(2)); got != tk {
		t.Errorf("b claimed %q, want %s after gaining the capability", got, tk)
	}
}

// testCapRequeueKeepsCap: a requeued task keeps its requirement and goes
// back to its place among the tasks of it.
func testCapRequeueKeepsCap(t *testing.T, s store.Store) {
	first := insert(t, s, store.TaskInsertParams{Cap: capOf("k", "a", "b"), Now: at(0)}).ID
	second := insert(t, s, store.TaskInsertParams{Cap: capOf("k"), Now: at(1)}).ID
	claimID(t, s, first, "a", at(2))
	must(t, "CapSetInstance", s.CapSetInstance(t.Context(), &store.CapSetInstanceParams{Instance: "a", Cannot: []string{"k"}}))
	back, err := s.TaskRequeue(t.Context(), &store.TaskRequeueParams{ID: first, Now: at(3)})
	must(t, "TaskRequeue", err)
	if back.CapKey != "k" {
		t.Errorf("requeued CapKey = %q, want k", back.CapKey)
	}
	if got := claimOn(t, s, "a", at(4)); got != "" {
		t.Errorf("a claimed %s, want nothing", got)
	}
	if got := claimOn(t, s, "b", at(5)); got != first {
		t.Errorf("b claimed %s, want the requeued %s first", got, first)
	}
	if got := claimOn(t, s, "b", at(6)); got != second {
		t.Errorf("b claimed %s, want %s", got, second)
	}
	finish(t, s, first, task.StatusRunning, task.StatusCompleted, at(7))
}
