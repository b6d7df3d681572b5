package app_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// stopAsync stops e on another goroutine; the channel closes when the
// gateway has stopped.
func stopAsync(e *apptest.Env) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Stop()
	}()
	return done
}

// TestShutdownDrains: a shutdown turns readiness false, claims nothing
// more, takes the prefetched prompt back out of the instance's queue to
// the gateway's queue (attempt refunded) and lets the running one finish;
// the gateway stops as soon as it did. The next start runs what was
// handed back, each task once.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	e, admin, a, b := prefetched(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.ShutdownGrace = config.Duration(time.Minute)
	}}, body(basic("shutdown/a")), body(basic("shutdown/b")))
	sim := e.Sims[0]
	app := e.App()
	stopped := stopAsync(e)
	e.Eventually(10*time.Second, "the prefetched task back in the queue", func() bool { return getTask(e, admin, b).Status == "pending" })
	if !app.Draining() {
		t.Error("draining is false while the gateway drains")
	}
	if r := e.Do("GET", "/readyz", "", nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz while draining: %d %s, want 503", r.Status, r.Raw)
	}
	// The API still answers while the gateway drains; what it accepts
	// waits for another replica or the next start.
	c := submit(e, admin, body(basic("shutdown/c"))).ID
	if got := getTask(e, admin, a); got.Status != "running" {
		t.Errorf("running task is %s during the drain, want running", got.Status)
	}
	select {
	case <-stopped:
		t.Fatal("the gateway stopped while a task still ran")
	case <-time.After(300 * time.Millisecond):
	}
	sim.Release()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not stop once its running task ended")
	}
	for _, id := range []string{b, c} {
		if n := e.SimLog.Count(id); n != 0 {
			t.Errorf("task %s started %d times on the instance during the drain, want 0", id, n)
		}
	}
	if n := queued(t, sim.URL()); n != 0 {
		t.Errorf("the instance's queue holds %d prompts after the drain, want 0", n)
	}
	if received(sim, c) {
		t.Error("a task submitted during the drain was sent to the instance")
	}
	e.Restart()
	admin = e.Login(apptest.AdminUser, apptest.AdminPass)
	if got := waitStatus(e, admin, a, "completed", 10*time.Second); got.Attempts != 1 {
		t.Errorf("the task that ran through the drain has %d attempts, want 1", got.Attempts)
	}
	for _, id := range []string{b, c} {
		if got := waitStatus(e, admin, id, "completed", 20*time.Second); got.Attempts != 1 {
			t.Errorf("task %s completed after %d attempts, want 1 (a pull back is refunded)", id, got.Attempts)
		}
	}
	for _, id := range []string{a, b, c} {
		if n, ok := e.SimLog.Count(id), successes(e.SimLog, id); n != 1 || ok != 1 {
			t.Errorf("task %s ran %d times (%d succeeded), want 1", id, n, ok)
		}
	}
}

// TestShutdownGraceRunsOut: a run that outlasts server.shutdownGrace is
// left running on its instance and in the store, the gateway stops within
// the grace, and the next start reattaches the run: it completes, once.
func TestShutdownGraceRunsOut(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.ShutdownGrace = config.Duration(grace)
	}})
	admin := e.Login(apptest.AdminUser, apptest.AdminPass)
	waitAlive(e, admin)
	sim := e.Sims[0]
	sim.Hang("")
	a := submit(e, admin, body(basic("shutdown/long"))).ID
	e.Eventually(10*time.Second, "the prompt to hang", func() bool { return slices.Contains(sim.Hanging(), a) })
	start := time.Now()
	e.Stop()
	// The process tests hold the exit to the grace; in-process, with the
	// race detector on a busy machine, the teardown after the drain gets
	// slack (the bound is not a speed check: without the grace, Stop would
	// wait for the hung run forever).
	if took := time.Since(start); took > grace+15*time.Second {
		t.Errorf("the gateway took %v to stop, with a grace of %v", took, grace)
	}
	e.Restart()
	admin = e.Login(apptest.AdminUser, apptest.AdminPass)
	if got := getTask(e, admin, a); got.Status != "running" {
		t.Fatalf("after the restart the task is %s, want running (reattached)", got.Status)
	}
	sim.Release()
	if got := waitStatus(e, admin, a, "completed", 10*time.Second); got.Attempts != 1 {
		t.Errorf("completed after %d attempts, want 1", got.Attempts)
	}
	if n := e.SimLog.Count(a); n != 1 {
		t.Errorf("ran %d times, want 1", n)
	}
}

// TestShutdownNotHeldByAnOpenRequest: a client that opened a request and
// never finished it cannot hold the shutdown past server.shutdownGrace:
// the gateway waits for the requests under way for half the time left,
// then closes the connections still open, and the components stop in the
// other half.
func TestShutdownNotHeldByAnOpenRequest(t *testing.T) {
	t.Parallel()
	const grace = 4 * time.Second
	e := apptest.Start(t, apptest.Options{Instances: 1, Configure: func(c *config.Config) {
		c.Server.ShutdownGrace = config.Duration(grace)
	}})
	conn, err := net.Dial("tcp", e.App().Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A request whose body never comes: once the gateway has said
	// "100 Continue" its handler waits for the body.
	if _, err := fmt.Fprintf(conn, "POST /api/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"+
		"Content-Length: 64\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("the gateway answered %q (%v), want 100 Continue", line, err)
	}
	if line, err := rd.ReadString('\n'); err != nil || line != "\r\n" {
		t.Fatalf("after 100 Continue: %q (%v), want its end", line, err)
	}
	start := time.Now()
	e.Stop()
	if took := time.Since(start); took >= grace {
		t.Errorf("the gateway took %v to stop, not within its grace of %v", took, grace)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rd.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("the open request's connection: read %v, want it closed by the gateway", err)
	}
}

// isReset reports whether err is a connection reset by the peer.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read" && !op.Timeout()
}

// queued counts the prompts in a ComfyUI instance's queue (GET /queue).
func queued(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var q struct {
		Running []json.RawMessage `json:"queue_running"`
		Pending []json.RawMessage `json:"queue_pending"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
		t.Fatal(err)
	}
	return len(q.Running) + len(q.Pending)
}
