package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// postPrompt sends a prompt straight to a ComfyUI instance (POST /prompt)
// and returns the prompt_id it assigned.
//
// The baselines talk to ComfyUI through this thin client rather than
// internal/comfy on purpose: comfy.Client and comfy.Conn do what the gateway
// needs (error shapes, every frame decoded), which costs a direct client
// about 0.2 to 0.5 ms per prompt that a baseline should not pay.
func (e *env) postPrompt(ctx context.Context, base, prompt, clientID string) (string, error) {
	body := `{"prompt":` + prompt
	if clientID != "" {
		body += `,"client_id":"` + clientID + `"`
	}
	body += `}`
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/prompt", bytes.NewReader([]byte(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST /prompt: %d %s", resp.StatusCode, raw)
	}
	var out struct {
		PromptID string `json:"prompt_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("POST /prompt: %w", err)
	}
	return out.PromptID, nil
}

// roundRobin posts n prompts straight into the instances' own queues
// (their base URLs), prompt i to instance i mod len, from clients
// concurrent clients, as a round-robin proxy in front of the instances
// would. It returns the prompt ids, by i.
func (e *env) roundRobin(ctx context.Context, bases []string, clientID string, clients, n int, prompt func(i int) string) ([]string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id, err := e.postPrompt(ctx, bases[i%len(bases)], prompt(i), clientID)
				if err != nil {
					cancel(fmt.Errorf("prompt %d: %w", i, err))
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	return ids, context.Cause(ctx)
}

// waitFinished waits until the log holds n finished runs. The log's end
// times, not this wait, give the timings; it checks every 100ms rather
// than on each of the log's changes (Log.Wait), which would scan the whole
// log thousands of times a second in the bench process, beside the
// simulators being measured.
func waitFinished(ctx context.Context, log *comfysim.Log, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		done := 0
		for _, id := range log.PromptIDs() {
			for _, r := range log.Runs(id) {
				if r.Outcome != comfysim.OutcomeRunning {
					done++
				}
			}
		}
		if done >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s: %d of %d prompts finished", limit, done, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// work sums the runs' durations in the log and finds the longest and the
// last end.
func work(log *comfysim.Log) (total, longest time.Duration, lastEnd time.Time, failed int) {
	for _, id := range log.PromptIDs() {
		for _, r := range log.Runs(id) {
			d := r.End.Sub(r.Start)
			total += d
			longest = max(longest, d)
			if r.End.After(lastEnd) {
				lastEnd = r.End
			}
			if r.Outcome != comfysim.OutcomeSuccess {
				failed++
			}
		}
	}
	return total, longest, lastEnd, failed
}
