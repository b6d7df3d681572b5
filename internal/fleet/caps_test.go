package fleet_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/store"
)

// TestCapsFollowCatalogues: Admit records which instances can run a task,
// a refreshed catalogue that gained a model adds the instance, Reroute
// takes one away while another remains, and new labels are synced too.
func TestCapsFollowCatalogues(t *testing.T) {
	t.Parallel()
	f, cs, clients, sims := setupSims(t)
	refresh(t, f, clients, "a1", "a2", "b1")
	a, err := f.Admit(t.Context(), &catalog.Request{Prompt: decode(prompt)})
	if err != nil || a.Verdict.Problem != nil || a.Cap == nil {
		t.Fatalf("Admit = %+v, %v", a, err)
	}
	if diff := cmp.Diff([]string{"a1", "a2"}, a.Cap.Instances); diff != "" {
		t.Errorf("capable instances (-want +got):\n%s", diff)
	}
	tk, err := cs.TaskInsert(t.Context(), &store.TaskInsertParams{ID: "t1", Workflow: []byte(prompt), Cap: a.Cap})
	if err != nil {
		t.Fatal(err)
	}
	capable := func() []string {
		t.Helper()
		c, err := cs.CapGet(t.Context(), tk.CapKey)
		if err != nil {
			t.Fatal(err)
		}
		return c.Instances
	}
	sims["b1"].SetModels([]string{"sd_xl_base_1.0.safetensors"}, nil)
	refresh(t, f, clients, "b1")
	if diff := cmp.Diff([]string{"a1", "a2", "b1"}, capable()); diff != "" {
		t.Errorf("after b1 gained the model (-want +got):\n%s", diff)
	}
	for _, id := range []string{"a1", "a2"} {
		if ok, err := f.Reroute(t.Context(), tk.CapKey, id); !ok || err != nil {
			t.Errorf("Reroute(%s) = %v, %v; want true: others can run it", id, ok, err)
		}
	}
	if ok, err := f.Reroute(t.Context(), tk.CapKey, "b1"); ok || err != nil {
		t.Errorf("Reroute(b1) = %v, %v; want false: no other instance left", ok, err)
	}
	if diff := cmp.Diff([]string{"b1"}, capable()); diff != "" {
		t.Errorf("after reroutes (-want +got):\n%s", diff)
	}
	if ok, _ := f.Reroute(t.Context(), "", "b1"); ok {
		t.Errorf("Reroute of a task without requirement = true")
	}
	// The task requires gpu=t4: relabelling b1 takes it away.
	b, err := f.Admit(t.Context(), &catalog.Request{Prompt: decode(prompt), Requires: map[string]string{"gpu": "t4"}})
	if err != nil || b.Cap == nil {
		t.Fatalf("Admit = %+v, %v", b, err)
	}
	if diff := cmp.Diff([]string{"b1"}, b.Cap.Instances); diff != "" {
		t.Errorf("gpu=t4 (-want +got):\n%s", diff)
	}
	if _, err := cs.TaskInsert(t.Context(), &store.TaskInsertParams{ID: "t2", Workflow: []byte(prompt), Cap: b.Cap}); err != nil {
		t.Fatal(err)
	}
	list := f.Instances()
	list[2].Labels = map[string]string{"gpu": "h100"}
	if _, _, err := f.Set(t.Context(), list); err != nil {
		t.Fatal(err)
	}
	c, err := cs.CapGet(t.Context(), b.Cap.Key)
	if err != nil || len(c.Instances) != 0 {
		t.Errorf("after relabelling, gpu=t4 runs on %v, %v; want none", c.Instances, err)
	}
}
