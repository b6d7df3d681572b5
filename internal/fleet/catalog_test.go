package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/comfyfleet/comfyfleet/internal/catalog"
	"github.com/comfyfleet/comfyfleet/internal/comfy"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/event"
	"github.com/comfyfleet/comfyfleet/internal/fleet"
	"github.com/comfyfleet/comfyfleet/internal/instance"
	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/store/sqlitestore"
)

// countingStore counts catalogue writes.
type countingStore struct {
	store.Store
	mu           sync.Mutex
	puts, stored int
	lists        int // InstanceList calls
}

func (s *countingStore) CatalogPut(ctx context.Context, p *store.CatalogPutParams) (bool, error) {
	created, err := s.Store.CatalogPut(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	if created {
		s.stored++
	}
	return created, err
}

func (s *countingStore) InstanceList(ctx context.Context) ([]instance.State, error) {
	s.mu.Lock()
	s.lists++
	s.mu.Unlock()
	return s.Store.InstanceList(ctx)
}

func (s *countingStore) listCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

func (s *countingStore) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts, s.stored
}

// setup is a fleet of three instances: a1 and a2 (gpu=a100) simulate the
// default checkpoints, b1 (gpu=t4) SD 1.5 only.
func setup(t *testing.T) (*fleet.Fleet, *countingStore, map[string]*comfy.Client) {
	t.Helper()
	f, cs, clients, _ := setupSims(t)
	return f, cs, clients
}

// setupSims is setup with the simulators.
func setupSims(t *testing.T) (*fleet.Fleet, *countingStore, map[string]*comfy.Client, map[string]*comfysim.Sim) {
	t.Helper()
	sims := map[string]*comfysim.Sim{}
	st, err := sqlitestore.Open(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	f := fleet.New(cs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	clients := map[string]*comfy.Client{}
	var list []instance.Instance
	for _, s := range []struct {
		id     string
		ckpts  []string
		labels map[string]string
	}{
		{"a1", nil, map[string]string{"gpu": "a100"}},
		{"a2", nil, map[string]string{"gpu": "a100"}},
		{"b1", []string{"v1-5-pruned-emaonly.safetensors"}, map[string]string{"gpu": "t4"}},
	} {
		sim := comfysim.New(comfysim.Options{Checkpoints: s.ckpts})
		if err := sim.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		sims[s.id] = sim
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		clients[s.id] = comfy.New(sim.URL(), "", &http.Client{Transport: tr})
		list = append(list, instance.Instance{ID: s.id, ServerID: "s", IP: "127.0.0.1", Port: 1, Labels: s.labels})
	}
	if _, _, err := f.Set(t.Context(), list); err != nil {
		t.Fatal(err)
	}
	return f, cs, clients, sims
}

func refresh(t *testing.T, f *fleet.Fleet, clients map[string]*comfy.Client, ids ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		h, err := f.RefreshCatalog(t.Context(), clients[id], id)
		if err != nil {
			t.Fatalf("RefreshCatalog(%s): %v", id, err)
		}
		out[id] = h
	}
	return out
}

func TestRefreshCatalogStoresOncePerHash(t *testing.T) {
	t.Parallel()
	f, cs, clients := setup(t)
	h := refresh(t, f, clients, "a1", "a2", "b1", "a1")
	if h["a1"] != h["a2"] || h["a1"] == h["b1"] || len(h["a1"]) != 64 {
		t.Fatalf("hashes %v: want a1 = a2 != b1", h)
	}
	if puts, stored := cs.counts(); puts != 2 || stored != 2 {
		t.Errorf("CatalogPut calls, stores = %d, %d; want 2, 2 (one per distinct catalogue)", puts, stored)
	}
	for id, want := range h {
		st, err := cs.InstanceGet(t.Context(), id)
		if err != nil || st.CatalogHash != want {
			t.Errorf("state of %s: hash %q, %v; want %q", id, st.CatalogHash, err, want)
		}
	}
	// A second fleet (another replica, or a restart) finds the hash stored:
	// it read the catalogues when it registered the instances.
	again := fleet.New(cs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, _, err := again.Set(t.Context(), f.Instances()); err != nil {
		t.Fatal(err)
	}
	refresh(t, again, clients, "a1")
	if puts, stored := cs.counts(); puts > 3 || stored != 2 {
		t.Errorf("after another replica's refresh: puts, stores = %d, %d; want at most 3, 2", puts, stored)
	}
}

func TestRefreshCatalogError(t *testing.T) {
	t.Parallel()
	f, _, clients := setup(t)
	h := refresh(t, f, clients, "a1")
	if _, err := f.RefreshCatalog(t.Context(), failing{}, "a1"); err == nil {
		t.Fatalf("RefreshCatalog with a failing reader succeeded")
	}
	if _, got, err := f.Catalog(t.Context(), "a1"); err != nil || got != h["a1"] {
		t.Errorf("after a failed refresh: hash %q, %v; want the old %q", got, err, h["a1"])
	}
}

const prompt = `{
	"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
	"2": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
	"3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
	"4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}`

func decode(doc string) map[string]catalog.Node {
	var raw map[string]catalog.Node
	var wire map[string]struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(doc), &wire); err != nil {
		panic(err)
	}
	raw = map[string]catalog.Node{}
	for id, n := range wire {
		raw[id] = catalog.Node{ClassType: n.ClassType, Inputs: n.Inputs}
	}
	return raw
}

type failing struct{}

func (failing) ObjectInfo(context.Context) ([]byte, error) {
	return nil, errors.New("connection refused")
}

func TestViewsShowLabelsAndCatalog(t *testing.T) {
	t.Parallel()
	f, _, clients := setup(t)
	h := refresh(t, f, clients, "a1", "b1")
	views, err := f.Views(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]fleet.View{}
	for _, v := range views {
		byID[v.ID] = v
	}
	if diff := cmp.Diff(map[string]string{"gpu": "a100"}, byID["a1"].Labels); diff != "" {
		t.Errorf("a1 labels (-want +got):\n%s", diff)
	}
	wantB := &catalog.Summary{Hash: h["b1"], NodeClasses: 378, Checkpoints: []string{"v1-5-pruned-emaonly.safetensors"}, Loras: []string{}}
	if diff := cmp.Diff(wantB, byID["b1"].Catalog); diff != "" {
		t.Errorf("b1 catalog (-want +got):\n%s", diff)
	}
	if c := byID["a1"].Catalog; c == nil || len(c.Checkpoints) != len(comfysim.DefaultCheckpoints) {
		t.Errorf("a1 catalog = %+v, want the default checkpoints", c)
	}
	if byID["a2"].Catalog != nil {
		t.Errorf("a2 was never read, but shows catalog %+v", byID["a2"].Catalog)
	}
	v, err := f.View(t.Context(), "b1")
	if err != nil || v.Catalog == nil || v.Catalog.Hash != h["b1"] {
		t.Errorf("View(b1) = %+v, %v", v, err)
	}
	if _, _, err := f.Catalog(t.Context(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Catalog of an unknown id: %v, want ErrNotFound", err)
	}
	if c, h, err := f.Catalog(t.Context(), "a2"); c != nil || h != "" || err != nil {
		t.Errorf("Catalog of an unread instance = %v, %q, %v; want nothing", c, h, err)
	}
}

func TestCheckUsesTheFleet(t *testing.T) {
	t.Parallel()
	f, _, clients := setup(t)
	v, err := f.Check(t.Context(), &catalog.Request{Prompt: map[string]catalog.Node{}})
	if err != nil || v.Checked {
		t.Fatalf("Check before any catalogue is known = %+v, %v; want unchecked", v, err)
	}
	refresh(t, f, clients, "a1", "a2", "b1")
	ix, err := f.Index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := f.Index(t.Context()); again != ix {
		t.Errorf("Index rebuilt although nothing changed")
	}
	v, err = f.Check(t.Context(), &catalog.Request{Prompt: decode(prompt)})
	if err != nil || v.Problem != nil {
		t.Fatalf("Check = %+v, %v", v, err)
	}
	if diff := cmp.Diff([]string{"a1", "a2"}, v.Instances); diff != "" {
		t.Errorf("instances that can run an SDXL prompt (-want +got):\n%s", diff)
	}
	list := f.Instances()
	list[2].Labels = map[string]string{"gpu": "h100"}
	if _, _, err := f.Set(t.Context(), list); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.Index(t.Context()); again == ix {
		t.Errorf("Index kept although labels changed")
	}
	v, err = f.Check(t.Context(), &catalog.Request{Prompt: map[string]catalog.Node{}, Requires: map[string]string{"gpu": "t4"}})
	if err != nil || v.Problem == nil || v.Problem.Type != catalog.ProblemNoMatchingLabels {
		t.Errorf("Check requiring gpu=t4 after relabelling = %+v, %v; want no_matching_labels", v, err)
	}
}

// TestIndexKeepsHashes: admitting prompts does not list the instances'
// states for each one. A catalogue read anew on this replica counts at
// once; one read on another replica counts once its catalog_changed event
// arrives (CatalogChanged).
func TestIndexKeepsHashes(t *testing.T) {
	t.Parallel()
	f, cs, clients := setup(t)
	refresh(t, f, clients, "a1", "a2", "b1")
	sdxl := &catalog.Request{Prompt: decode(prompt)}
	before := cs.listCount()
	for range 100 {
		if v, err := f.Check(t.Context(), sdxl); err != nil || v.Problem != nil {
			t.Fatalf("Check = %+v, %v", v, err)
		}
	}
	if n := cs.listCount() - before; n > 1 {
		t.Errorf("100 checks listed the instance states %d times, want at most once", n)
	}

	sub, err := cs.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Another replica reads a1's catalogue anew, and finds b1's (SD 1.5 only).
	other := fleet.New(cs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, _, err := other.Set(t.Context(), f.Instances()); err != nil {
		t.Fatal(err)
	}
	if _, err := other.RefreshCatalog(t.Context(), clients["b1"], "a1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := other.Check(t.Context(), sdxl); !slices.Equal(v.Instances, []string{"a2"}) {
		t.Errorf("the replica that read the catalogue: SDXL runs on %v, want [a2]", v.Instances)
	}
	for ev := range sub.C() {
		if ev.Type == event.TypeCatalogChanged {
			var d event.CatalogChangedData
			if err := json.Unmarshal(ev.Data, &d); err != nil || d.InstanceID != "a1" {
				t.Errorf("catalog_changed data %s, want instance a1", ev.Data)
			}
			break
		}
	}
	f.CatalogChanged()
	if v, _ := f.Check(t.Context(), sdxl); !slices.Equal(v.Instances, []string{"a2"}) {
		t.Errorf("after catalog_changed: SDXL runs on %v, want [a2]", v.Instances)
	}
}
