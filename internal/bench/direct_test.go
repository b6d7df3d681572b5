package bench

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// TestDirectWindowKeepsItsWindow: the window path never holds more than k
// prompts in an instance (running and queued), fills the window, and runs
// every prompt once.
func TestDirectWindowKeepsItsWindow(t *testing.T) {
	t.Parallel()
	s, err := startSims(1, comfysim.Options{NodeDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	e, err := newEnv(Options{TempDir: t.TempDir(), Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	const k, n = 2, 12
	prompts := make([]string, n)
	for i := range prompts {
		prompts[i] = fmt.Sprintf(`{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":%d}},`+
			`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"window"}}}`, i+1)
	}
	// Watch the instance's queue while the path runs.
	stop := make(chan struct{})
	most := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			var q struct {
				Running []json.RawMessage `json:"queue_running"`
				Pending []json.RawMessage `json:"queue_pending"`
			}
			if err := e.getJSON(t.Context(), s.urls()[0]+"/queue", &q); err == nil {
				most = max(most, len(q.Running)+len(q.Pending))
			}
		}
	})
	_, err = e.directWindow(s.urls(), k)(t.Context(), prompts)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if most != k {
		t.Errorf("at most %d prompts in the instance at once, want %d", most, k)
	}
	if got := s.log.Total(); got != n {
		t.Errorf("%d runs, want %d", got, n)
	}
	if d := s.log.Duplicates(); len(d) > 0 {
		t.Errorf("prompts run twice: %v", d)
	}
}
