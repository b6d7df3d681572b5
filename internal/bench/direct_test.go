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
// prompts in an instance (running and queued), fills every instance's
// window, and runs every prompt once.
func TestDirectWindowKeepsItsWindow(t *testing.T) {
	t.Parallel()
	for _, instances := range []int{1, 2} {
		t.Run(fmt.Sprintf("instances=%d", instances), func(t *testing.T) {
			t.Parallel()
			s, err := startSims(instances, comfysim.Options{NodeDelay: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			e, err := newEnv(Options{TempDir: t.TempDir(), Log: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			defer e.close()
			const k, n = 2, 16
			prompts := make([]string, n)
			for i := range prompts {
				prompts[i] = fmt.Sprintf(`{"1":{"class_type":"EmptyImage","inputs":{"width":8,"height":8,"batch_size":1,"color":%d}},`+
					`"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"window"}}}`, i+1)
			}
			// Watch each instance's queue while the path runs: every 1 ms,
			// against a prompt of two 20 ms nodes, so the watch sees a full
			// window even on a loaded machine.
			stop := make(chan struct{})
			most := make([]int, instances)
			var wg sync.WaitGroup
			for i, base := range s.urls() {
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
						if err := e.getJSON(t.Context(), base+"/queue", &q); err == nil {
							most[i] = max(most[i], len(q.Running)+len(q.Pending))
						}
					}
				})
			}
			_, err = e.directWindow(s.urls(), k)(t.Context(), prompts)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range most {
				if m != k {
					t.Errorf("instance %d: at most %d prompts in it at once, want %d", i, m, k)
				}
			}
			if got := s.log.Total(); got != n {
				t.Errorf("%d runs, want %d", got, n)
			}
			if d := s.log.Duplicates(); len(d) > 0 {
				t.Errorf("prompts run twice: %v", d)
			}
		})
	}
}
