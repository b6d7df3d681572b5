package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// directBurst posts the prompts straight to the instances at once,
// round-robin from Sizes.Clients concurrent clients, and waits until every
// one finished; with outputs, each finished prompt's history and images are
// fetched by as many clients, and the burst ends with the last fetch.
func (e *env) directBurst(bases []string, outputs bool) func(ctx context.Context, prompts []string) (time.Duration, error) {
	return func(ctx context.Context, prompts []string) (time.Duration, error) {
		n := len(prompts)
		clientID := "bench-" + randomHex(8)
		done := newTracker(n, true)
		// finished holds the prompts to fetch; it has room for all of them.
		finished := make(chan [2]string, n)
		ws, err := dialComfy(ctx, bases, clientID, func(base, id string, failed bool, at time.Time) {
			if outputs && !failed {
				select {
				case finished <- [2]string{base, id}:
				default:
				}
			}
			done.on(outcome(id, failed), at)
		})
		if err != nil {
			return 0, err
		}
		defer ws.close()
		fetched := newTracker(n, false)
		if outputs {
			defer e.fetchAll(ctx, finished, fetched)()
		}
		start := time.Now()
		ids, err := e.roundRobin(ctx, bases, clientID, e.sizes.Clients, n, func(i int) string { return prompts[i] })
		if err != nil {
			return 0, err
		}
		if err := done.wait(ctx, ws.ended, 10*time.Minute); err != nil {
			return 0, err
		}
		if err := checkFinished(done, ids); err != nil {
			return 0, err
		}
		last := done
		if outputs {
			if err := fetched.wait(ctx, nil, 10*time.Minute); err != nil {
				return 0, err
			}
			if _, failed, _ := fetched.counts(); failed > 0 {
				return 0, fmt.Errorf("%d of %d prompts' outputs could not be fetched", failed, n)
			}
			last = fetched
		}
		_, _, end := last.counts()
		return end.Sub(start), nil
	}
}

// checkFinished checks that every posted prompt finished, none failed.
func checkFinished(done *tracker, ids []string) error {
	done.mu.Lock()
	defer done.mu.Unlock()
	if done.failed > 0 {
		return fmt.Errorf("%d of %d prompts failed", done.failed, len(ids))
	}
	for _, id := range ids {
		if _, ok := done.at[id]; !ok {
			return fmt.Errorf("prompt %s: no executing{node:null} for it", id)
		}
	}
	return nil
}

// fetchAll fetches the outputs of each finished prompt (base URL and
// prompt id) from Sizes.Clients concurrent clients, counting each in
// fetched, until the returned stop is called.
func (e *env) fetchAll(ctx context.Context, finished <-chan [2]string, fetched *tracker) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range e.sizes.Clients {
		wg.Go(func() {
			for {
				select {
				case <-quit:
					return
				case f := <-finished:
					err := e.fetchOutputs(ctx, f[0], f[1])
					if err != nil {
						e.logf("fetch outputs of %s: %v", f[1], err)
					}
					fetched.on(outcome(f[1], err != nil), time.Now())
				}
			}
		})
	}
	return func() { close(quit); wg.Wait() }
}

// outcome is the message a tracker counts for a finished prompt.
func outcome(id string, failed bool) *message {
	m := &message{Type: "task_completed"}
	if failed {
		m.Type = "task_failed"
	}
	m.Data.TaskID = id
	return m
}

// waitID reads done until want arrives.
func waitID(ctx context.Context, done <-chan string, want string, ended <-chan struct{}) error {
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case got := <-done:
			if got == want {
				return nil
			}
			if strings.HasPrefix(got, "task_failed") {
				return fmt.Errorf("%s", got)
			}
		case <-ended:
			return errStreamEnded
		case <-timeout.C:
			return fmt.Errorf("no %q within a minute", want)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finishedFunc is called, on a connection's reading goroutine, for each
// executing{node:null} frame: the instance's base URL, the prompt id,
// whether an execution_error for that prompt came before, and when the
// frame was read.
type finishedFunc func(base, promptID string, failed bool, at time.Time)

// comfySocket is one client's /ws connections to ComfyUI instances, one per
// instance under the same client id, reporting the prompts that finish.
type comfySocket struct {
	conns []*websocket.Conn
	// ended is closed when any connection stops reading.
	ended   chan struct{}
	once    sync.Once
	readers sync.WaitGroup
}

// dialComfy connects to each instance's /ws as clientID.
func dialComfy(ctx context.Context, bases []string, clientID string, on finishedFunc) (*comfySocket, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s := &comfySocket{ended: make(chan struct{})}
	for _, base := range bases {
		conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?clientId="+clientID, nil)
		if err != nil {
			s.close()
			return nil, err
		}
		conn.SetReadLimit(16 << 20)
		s.conns = append(s.conns, conn)
		s.readers.Go(func() { s.read(conn, base, on) })
	}
	return s, nil
}

// read decodes only the frames that may end a prompt.
func (s *comfySocket) read(conn *websocket.Conn, base string, on finishedFunc) {
	defer s.once.Do(func() { close(s.ended) })
	failed := map[string]bool{}
	for {
		typ, b, err := conn.Read(context.Background())
		if err != nil {
			return
		}
		at := time.Now()
		if typ != websocket.MessageText || !(bytes.Contains(b, []byte(`"executing"`)) || bytes.Contains(b, []byte(`"execution_error"`))) {
			continue
		}
		var m struct {
			Type string `json:"type"`
			Data struct {
				Node     *string `json:"node"`
				PromptID string  `json:"prompt_id"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch {
		case m.Type == "execution_error":
			failed[m.Data.PromptID] = true
		case m.Type == "executing" && m.Data.Node == nil:
			on(base, m.Data.PromptID, failed[m.Data.PromptID], at)
			delete(failed, m.Data.PromptID)
		}
	}
}

// close closes every connection and waits for the readers.
func (s *comfySocket) close() {
	for _, c := range s.conns {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	s.readers.Wait()
}

// fetchOutputs reads a prompt's history and downloads its images.
func (e *env) fetchOutputs(ctx context.Context, base, id string) error {
	var hist map[string]struct {
		Outputs map[string]struct {
			Images []struct {
				Filename  string `json:"filename"`
				Subfolder string `json:"subfolder"`
				Type      string `json:"type"`
			} `json:"images"`
		} `json:"outputs"`
	}
	if err := e.getJSON(ctx, base+"/history/"+id, &hist); err != nil {
		return err
	}
	n := 0
	for _, out := range hist[id].Outputs {
		for _, img := range out.Images {
			q := url.Values{"filename": {img.Filename}, "subfolder": {img.Subfolder}, "type": {img.Type}}
			if err := e.getJSON(ctx, base+"/view?"+q.Encode(), nil); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("prompt %s: no output image in its history", id)
	}
	return nil
}

// getJSON GETs u and decodes it into out, or discards the body when out is nil.
func (e *env) getJSON(ctx context.Context, u string, out any) error {
	return e.get(ctx, u, func(body io.Reader) error {
		if out == nil {
			_, err := io.Copy(io.Discard, body)
			return err
		}
		return json.NewDecoder(body).Decode(out)
	})
}

// directWindow posts the prompts straight to the instances the way the
// gateway places them at a prefetch of k-1: each instance holds at most k
// of them (one running, the rest waiting in its queue), and each instance's
// prompts go out one at a time, the next once the instance answered the one
// before and, once k are in it, one of them finished. Once the window is
// full, such a client sends one prompt for each that ends, as the gateway
// does, and ComfyUI takes each in while it runs another: the same window
// kept by a client that costs nothing else, what the gateway's throughput
// at that prefetch is to be read against.
func (e *env) directWindow(bases []string, k int) func(ctx context.Context, prompts []string) (time.Duration, error) {
	return func(ctx context.Context, prompts []string) (time.Duration, error) {
		n := len(prompts)
		clientID := "bench-" + randomHex(8)
		done := newTracker(n, true)
		// freed has a token for each finished prompt of an instance, room
		// for all of them; the socket's reader never blocks on it.
		freed := make(map[string]chan struct{}, len(bases))
		for _, b := range bases {
			freed[b] = make(chan struct{}, n)
		}
		ws, err := dialComfy(ctx, bases, clientID, func(base, id string, failed bool, at time.Time) {
			select {
			case freed[base] <- struct{}{}:
			default:
			}
			done.on(outcome(id, failed), at)
		})
		if err != nil {
			return 0, err
		}
		defer ws.close()
		// As long as directBurst waits for its last prompt, at most.
		ctx, stop := context.WithTimeout(ctx, 10*time.Minute)
		defer stop()
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		ids := make([]string, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for _, base := range bases {
			wg.Go(func() {
				held := 0
				for {
					// Room first, then the next prompt: an instance waiting
					// for room holds none that another could run.
					if held == k {
						select {
						case <-freed[base]:
							held--
						case <-ws.ended:
							cancel(errStreamEnded)
							return
						case <-ctx.Done():
							return
						}
					}
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					id, err := e.postPrompt(ctx, base, prompts[i], clientID)
					if err != nil {
						cancel(fmt.Errorf("prompt %d: %w", i, err))
						return
					}
					ids[i] = id
					held++
				}
			})
		}
		wg.Wait()
		if err := context.Cause(ctx); err != nil {
			return 0, err
		}
		if err := done.wait(ctx, ws.ended, 10*time.Minute); err != nil {
			return 0, err
		}
		if err := checkFinished(done, ids); err != nil {
			return 0, err
		}
		_, _, end := done.counts()
		return end.Sub(start), nil
	}
}
