package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// api is a REST client of the gateway, logged in or not.
type api struct {
	e     *env
	base  string
	token string
}

// envelope is the contract's answer shape.
type envelope struct {
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

// do sends one request and decodes the envelope's data into out (if not
// nil). Any status but 200 is an error naming the contract's error code.
func (a *api) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	var env envelope
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(raw, &env)
		return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, env.Error, env.Message)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return json.Unmarshal(env.Data, out)
}

// health answers nil when GET /api/health is 200.
func (a *api) health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.do(ctx, "GET", "/api/health", nil, nil)
}

// submit posts one task and returns its id.
func (a *api) submit(ctx context.Context, body []byte) (string, error) {
	var t struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, "POST", "/api/tasks", body, &t); err != nil {
		return "", err
	}
	return t.ID, nil
}

// overview is the part of GET /api/monitor/overview the bench reads.
type overview struct {
	TotalInstances int `json:"totalInstances"`
	AliveInstances int `json:"aliveInstances"`
	PendingTasks   int `json:"pendingTasks"`
	RunningTasks   int `json:"runningTasks"`
	CompletedTasks int `json:"completedTasks"`
	FailedTasks    int `json:"failedTasks"`
	CancelledTasks int `json:"cancelledTasks"`
}

func (a *api) overview(ctx context.Context) (overview, error) {
	var o overview
	err := a.do(ctx, "GET", "/api/monitor/overview", nil, &o)
	return o, err
}

// waitOverview polls the overview every 100ms until cond holds. It is for
// setting up and checking, never in a measured path.
func (a *api) waitOverview(ctx context.Context, limit time.Duration, what string, cond func(overview) bool) error {
	deadline := time.Now().Add(limit)
	for {
		o, err := a.overview(ctx)
		if err == nil && cond(o) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s: last overview %+v, err %v", limit, what, o, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitAlive waits until n instances are alive.
func (a *api) waitAlive(ctx context.Context, n int, limit time.Duration) error {
	return a.waitOverview(ctx, limit, fmt.Sprintf("%d instances alive", n), func(o overview) bool { return o.AliveInstances >= n })
}

// setEnabled enables or disables instances, concurrently.
func (a *api) setEnabled(ctx context.Context, ids []string, enabled bool) error {
	body := []byte(fmt.Sprintf(`{"enabled":%t}`, enabled))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = a.do(ctx, "PUT", "/api/instances/"+url.PathEscape(id), body, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// taskPage is GET /api/tasks's answer.
type taskPage struct {
	Total int `json:"total"`
	Items []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"items"`
}

func (a *api) listTasks(ctx context.Context, status string, limit, offset int) (taskPage, error) {
	var p taskPage
	path := fmt.Sprintf("/api/tasks?status=%s&limit=%d&offset=%d", status, limit, offset)
	err := a.do(ctx, "GET", path, nil, &p)
	return p, err
}

// get GETs u and hands a 200 answer's body to read.
func (e *env) get(ctx context.Context, u string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return read(resp.Body)
}

// download GETs u into the file path.
func (e *env) download(ctx context.Context, u, path string) error {
	return e.get(ctx, u, func(body io.Reader) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

// submitter posts n tasks from several concurrent clients.
type submitter struct {
	clients int
	// body returns task i's JSON body.
	body func(i int) []byte
	// as returns the client submitting task i.
	as func(i int) *api
	// onSubmit, when set, is called with each task's index and id.
	onSubmit func(i int, id string)
	// progress, when set, is called every about 5s with the count so far.
	progress func(done int)
}

// run submits tasks 0..n-1; it stops at the first error.
func (s submitter) run(ctx context.Context, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	stopProgress := s.report(&done)
	defer stopProgress()
	for range s.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id, err := s.as(i).submit(ctx, s.body(i))
				if err != nil {
					cancel(fmt.Errorf("submit task %d: %w", i, err))
					return
				}
				if s.onSubmit != nil {
					s.onSubmit(i, id)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

// report calls s.progress every 5s until the returned stop is called.
func (s submitter) report(done *atomic.Int64) (stop func()) {
	if s.progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				s.progress(int(done.Load()))
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// prefetch reads the gateway's scheduler.prefetch from GET /api/config.
func (a *api) prefetch(ctx context.Context) (int, error) {
	var cfg struct {
		Scheduler struct {
			Prefetch *int `json:"prefetch"`
		} `json:"scheduler"`
	}
	if err := a.do(ctx, http.MethodGet, "/api/config", nil, &cfg); err != nil {
		return 0, err
	}
	if cfg.Scheduler.Prefetch == nil {
		return 0, errors.New("GET /api/config: no scheduler.prefetch")
	}
	return *cfg.Scheduler.Prefetch, nil
}
