package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/blob/s3test"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
	"github.com/comfyfleet/comfyfleet/internal/store/redisstore/redistest"
)

// TestReplicasOnRedis: 3 gateway processes share one Redis, one S3 bucket
// (a real SeaweedFS) and 8 simulated instances, each with a data dir of its
// own: no shared directory. 1,000 tasks are submitted round-robin across
// them and one replica is killed with SIGKILL mid-run. Then:
//
//   - every task completed and ran once on the simulators, never on two at once;
//   - every /ws client of the survivors saw the completion of every task,
//     before and after the kill (final events are logged and published in
//     the transaction that finishes the task, so none dies with a replica),
//     including one away for 10 s that resumes with ?since= without a resync;
//   - every result URL, as each survivor renders it over REST and in its
//     clients' task_completed messages, names that survivor (no
//     server.publicBaseUrl is set), and every file is downloadable from
//     every survivor, byte-identical and equal to what the simulator wrote.
func TestReplicasOnRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const tasks, instances, replicas = 1000, 8, 3
	begin := time.Now()
	s3 := s3test.Start(t)
	files := fmt.Sprintf("files:\n  driver: s3\n  s3:\n    endpoint: %q\n    bucket: %q\n    credentialsFile: %q\n",
		s3.Endpoint, s3.Bucket(t), s3.CredentialsFile(t))
	// A short lease: the dead replica's instances are adopted 3 s after the kill.
	log, gws, tokens := startReplicas(t, instances, replicas, 2*time.Millisecond, files)
	survivors := []int{1, 2}
	away := watch(t, gws[2], tokens[2])
	seen := []*completions{watch(t, gws[1], tokens[1]), watch(t, gws[2], tokens[2]), away}
	seenOn := []int{1, 2, 2} // the replica each client is connected to

	ids, _ := submitRoundRobin(t, gws, tokens, tasks)
	apptest.Eventually(t, 120*time.Second, "200 completions", func() bool { return gws[1].completed(tokens[1]) >= 200 })
	gws[0].kill()
	t.Logf("killed replica 0 after %d runs started, %d tasks completed", len(log.PromptIDs()), gws[1].completed(tokens[1]))
	away.disconnectFor(10 * time.Second)

	apptest.Eventually(t, 180*time.Second, "all tasks completed", func() bool { return gws[1].completed(tokens[1]) == tasks })
	for _, id := range ids {
		if n := log.Count(id); n != 1 {
			t.Errorf("task %s ran %d times", id, n)
		}
	}
	if o := log.Overlaps(); len(o) != 0 {
		t.Errorf("overlapping runs: %v", o)
	}

	// Every event is in the event log, numbered: a client that lost its
	// connection resumes where it was, and a replica whose pub/sub
	// connection dropped reads what it missed from the log. So no
	// survivor's client misses a completion. A resumed client gets its
	// backlog after global_status: wait for the messages to arrive, not
	// just for the first one.
	hasAll := func(c *completions) bool {
		for _, id := range ids {
			if !c.has(id) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !(hasAll(seen[0]) && hasAll(seen[1]) && hasAll(away) && away.resumed() > 0) {
		time.Sleep(100 * time.Millisecond)
	}
	missed := make([]int, len(seen))
	for _, id := range ids {
		for w, c := range seen {
			if !c.has(id) {
				missed[w]++
				t.Logf("/ws client %d missed the completion of %s (connection error: %v)", w, id, c.lastErr())
				logLines(t, gws, id)
			}
		}
	}
	t.Logf("checked the /ws completions of %d tasks; missed per client: %v (client 2 resumed %d times)",
		len(ids), missed, away.resumed())
	for w, n := range missed {
		if n > 0 {
			t.Errorf("/ws client %d missed %d of %d completions", w, n, len(ids))
		}
	}
	if away.resumed() == 0 {
		t.Errorf("the client away for 10 s never resumed")
	}
	for w, c := range seen {
		if n := c.resyncs(); n != 0 {
			t.Errorf("/ws client %d got %d resync messages, want to resume without a gap", w, n)
		}
	}

	fetched := checkFiles(t, log, gws, tokens, survivors, ids, seen, seenOn)
	t.Logf("files: %d downloads from the survivors compared, byte for byte, with each other and the simulators", fetched)
	for _, g := range gws {
		if n := countFiles(t, filepath.Join(g.dir, "data")); n != 0 {
			t.Errorf("replica data dir %s holds %d files under files/: the bytes belong in S3", g.dir, n)
		}
	}
	gws[1].stop()
	gws[2].stop()
	t.Logf("run time %v", time.Since(begin).Round(time.Second))
}

// checkFiles checks the result files of every task: each survivor's REST
// record and its clients' task_completed messages name the same files with
// URLs of that survivor; every file downloads from every survivor with the
// same bytes, those the simulator that ran the task wrote. It returns the
// number of downloads.
func checkFiles(t *testing.T, log *comfysim.Log, gws []*gateway, tokens []string, survivors []int,
	ids []string, seen []*completions, seenOn []int) int {
	t.Helper()
	sims := map[string]*comfysim.Sim{}
	for _, s := range gws[0].sims {
		sims[s.Addr()] = s
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		fetched int
		next    = make(chan string)
	)
	for range 8 {
		wg.Go(func() {
			for id := range next {
				n := checkTaskFiles(t, sims, gws, tokens, survivors, id, seen, seenOn)
				mu.Lock()
				fetched += n
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return fetched
}

// taskFiles is what the test reads of a task's REST record.
type taskFiles struct {
	InstanceID string
	Result     *struct {
		Files   []string
		Outputs map[string][]struct{ URL, Filename, Kind string }
	}
}

func checkTaskFiles(t *testing.T, sims map[string]*comfysim.Sim, gws []*gateway, tokens []string, survivors []int,
	id string, seen []*completions, seenOn []int) int {
	fetched := 0
	var paths []string // the files' paths, /files/<id>/<name>, as the first survivor renders them
	var want [][]byte
	for k, r := range survivors {
		var v taskFiles
		if st := gws[r].do("GET", "/api/tasks/"+id, tokens[r], nil, &v); st != 200 || v.Result == nil || len(v.Result.Files) == 0 {
			t.Errorf("task %s on replica %d: status %d, result %+v", id, r, st, v.Result)
			return fetched
		}
		var got []string
		for _, u := range v.Result.Files {
			p, ok := strings.CutPrefix(u, gws[r].url)
			if !ok || !strings.HasPrefix(p, "/files/") {
				t.Errorf("task %s on replica %d: file URL %s does not name it (%s)", id, r, u, gws[r].url)
				return fetched
			}
			got = append(got, p)
		}
		for w, c := range seen {
			if seenOn[w] == r && !slices.Equal(c.urlsOf(id), v.Result.Files) {
				t.Errorf("task %s: /ws client %d on replica %d got URLs %v, REST there says %v", id, w, r, c.urlsOf(id), v.Result.Files)
			}
		}
		if k == 0 {
			paths = got
			want = simFiles(t, sims, v, id)
			if want == nil {
				return fetched
			}
		} else if !slices.Equal(got, paths) {
			t.Errorf("task %s: replica %d names files %v, replica %d %v", id, r, got, survivors[0], paths)
		}
	}
	for i, p := range paths {
		for _, r := range survivors {
			b, err := getBytes(gws[r].url + p)
			fetched++
			if err != nil {
				t.Errorf("task %s: %s from replica %d: %v", id, p, r, err)
			} else if !bytes.Equal(b, want[i]) {
				t.Errorf("task %s: %s from replica %d: %d bytes differ from the simulator's %d", id, p, r, len(b), len(want[i]))
			}
		}
	}
	return fetched
}

// simFiles reads the task's output files from the simulator that ran it,
// where its history says they are, in the order of the result's files;
// nil after reporting an error.
func simFiles(t *testing.T, sims map[string]*comfysim.Sim, v taskFiles, id string) [][]byte {
	sim := sims[v.InstanceID]
	if sim == nil {
		t.Errorf("task %s ran on %q, no simulator of the test", id, v.InstanceID)
		return nil
	}
	body, err := getBytes(sim.URL() + "/history/" + id) // the prompt id is the task's
	var hist map[string]struct {
		Outputs map[string]map[string][]struct{ Filename, Subfolder, Type string }
	}
	if err == nil {
		err = json.Unmarshal(body, &hist)
	}
	if err != nil {
		t.Errorf("task %s: history from its simulator: %v", id, err)
		return nil
	}
	where := map[string]string{} // result URL -> /view query
	for node, outs := range v.Result.Outputs {
		n := map[string]int{} // outputs seen per kind
		for _, o := range outs {
			refs := hist[id].Outputs[node][o.Kind]
			i := n[o.Kind]
			n[o.Kind]++
			if i >= len(refs) || refs[i].Filename != o.Filename {
				t.Errorf("task %s: %s output %d of node %s is %s, the history lists %+v", id, o.Kind, i, node, o.Filename, refs)
				return nil
			}
			where[o.URL] = url.Values{"filename": {refs[i].Filename}, "subfolder": {refs[i].Subfolder}, "type": {refs[i].Type}}.Encode()
		}
	}
	var out [][]byte
	for _, u := range v.Result.Files {
		q, ok := where[u]
		if !ok {
			t.Errorf("task %s: file %s is in no output", id, u)
			return nil
		}
		b, err := getBytes(sim.URL() + "/view?" + q)
		if err != nil {
			t.Errorf("task %s: /view?%s from its simulator: %v", id, q, err)
			return nil
		}
		out = append(out, b)
	}
	return out
}

// getBytes GETs u and returns the body of a 200.
func getBytes(u string) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return b, nil
}

// countFiles counts the regular files under dir/files, where the disk
// driver would keep file bytes.
func countFiles(t *testing.T, dir string) int {
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "files"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("walk %s: %v", dir, err)
	}
	return n
}

// TestReplicasLeaseMovesBetweenLiveReplicas: a replica frozen (SIGSTOP)
// for longer than its instance leases loses them to the others while its
// process, sockets and runs stay alive; when it resumes it must stop
// driving those instances at once. Every task completes exactly once,
// never on two instances at the same time, and none waits for its timeout
// (a detached socket used to leave the new holder deaf until then).
func TestReplicasLeaseMovesBetweenLiveReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const tasks, instances, replicas = 300, 4, 3
	const timeout, freeze = 120 * time.Second, 6 * time.Second
	log, gws, tokens := startReplicas(t, instances, replicas, 5*time.Millisecond,
		fmt.Sprintf("scheduler:\n  taskTimeout: %d\n", timeout.Milliseconds()))
	ids, _ := submitRoundRobin(t, gws, tokens, tasks/2)
	apptest.Eventually(t, 60*time.Second, "50 completions", func() bool { return gws[1].completed(tokens[1]) >= 50 })
	gws[0].signal(syscall.SIGSTOP)
	time.Sleep(freeze) // longer than the lease: the others adopt replica 0's instances meanwhile
	gws[0].signal(syscall.SIGCONT)
	apptest.Eventually(t, 60*time.Second, "the first half completed", func() bool { return gws[1].completed(tokens[1]) == tasks/2 })
	// Replica 0 is back and has lost its leases: the instances' new
	// holders must still hear their prompts' events.
	start := time.Now()
	more, _ := submitRoundRobin(t, gws, tokens, tasks/2)
	ids = append(ids, more...)
	apptest.Eventually(t, 90*time.Second, "all tasks completed", func() bool { return gws[1].completed(tokens[1]) == tasks })
	if waited := time.Since(start); waited > timeout/4 {
		t.Errorf("the second half took %v after the freeze: something waited for the task timeout", waited)
	}
	for _, id := range ids {
		if n := log.Count(id); n != 1 {
			t.Errorf("task %s ran %d times: %+v", id, n, log.Runs(id))
			logLines(t, gws, id)
		}
	}
	if o := log.Overlaps(); len(o) != 0 {
		t.Errorf("overlapping runs: %v", o)
	}
	for _, g := range gws {
		g.stop()
	}
}

// startReplicas starts instances simulated instances and replicas gateway
// processes sharing one Redis (key prefix of the test's own, a 3 s
// lease), logged in; extra is more YAML for their config. Everything
// stops at the end of the test.
func startReplicas(t *testing.T, instances, replicas int, step time.Duration, extra string) (*comfysim.Log, []*gateway, []string) {
	t.Helper()
	redisURL := redistest.URL(t)
	prefix := redistest.Prefix(t, redisURL)
	bin := buildBinary(t)
	log := comfysim.NewLog()
	sims, err := comfysim.StartFleet(instances, "127.0.0.1:0", comfysim.Options{Log: log, StepDelay: step})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range sims {
			s.Close()
		}
	})
	extra = fmt.Sprintf("store:\n  driver: redis\n  url: %q\n  prefix: %q\n  leaseTtl: 3000\nauth:\n  secret: %q\n",
		redisURL, prefix, strings.Repeat("s", 40)) + extra
	gws := make([]*gateway, replicas)
	for i := range gws {
		dir := t.TempDir()
		addr := freeAddr(t)
		gws[i] = &gateway{t: t, bin: bin, cfg: writeConfig(t, dir, addr, sims, extra), dir: dir, url: "http://" + addr, sims: sims}
		gws[i].start()
	}
	tokens := make([]string, replicas)
	for i, g := range gws {
		tokens[i] = g.login()
	}
	return log, gws, tokens
}

func submitRoundRobin(t *testing.T, gws []*gateway, tokens []string, n int) (ids []string, via []int) {
	ids, via = make([]string, n), make([]int, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				r := i % len(gws)
				var v struct{ ID string }
				if st := gws[r].do("POST", "/api/tasks", tokens[r], map[string]any{"workflow": sampleWorkflow(i)}, &v); st != 200 {
					t.Errorf("submit %d via replica %d: status %d", i, r, st)
				}
				ids[i], via[i] = v.ID, r
			}
		})
	}
	wg.Wait()
	return ids, via
}

// completions collects the task ids (and result URLs) of task_completed
// messages on one /ws client, which reconnects with ?since= (the seq of the last message it
// got) whenever its connection ends.
type completions struct {
	g     *gateway
	token string

	// mu guards the fields below.
	mu   sync.Mutex
	ids  map[string]bool
	err  error           // why the last connection ended
	last int64           // seq of the last logged message received
	conn *websocket.Conn // the current connection
	// urls are the result file URLs of each task_completed.
	urls map[string][]string
	// awayUntil: disconnectFor was asked; the client stays away until then.
	awayUntil time.Time
	resumes   int // connections opened with ?since=
	resync    int
}

func (c *completions) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id]
}

func (c *completions) lastErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *completions) resyncs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resync
}

// resumed is the number of connections opened with ?since=.
func (c *completions) resumed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumes
}

// urlsOf is the result file URLs of task id's task_completed.
func (c *completions) urlsOf(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[id]
}

// disconnectFor closes the client's connection; it reconnects, resuming,
// after d.
func (c *completions) disconnectFor(d time.Duration) {
	c.mu.Lock()
	c.awayUntil = time.Now().Add(d)
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.CloseNow()
	}
}

func watch(t *testing.T, g *gateway, token string) *completions {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &completions{g: g, token: token, ids: map[string]bool{}, urls: map[string][]string{}}
	if err := c.dial(ctx); err != nil {
		cancel()
		t.Fatalf("dial /ws: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		c.mu.Lock()
		if c.conn != nil {
			c.conn.CloseNow()
		}
		c.mu.Unlock()
		<-done
	})
	return c
}

// dial opens a connection, resuming after the last seq received if any.
func (c *completions) dial(ctx context.Context) error {
	c.mu.Lock()
	u := "ws" + strings.TrimPrefix(c.g.url, "http") + "/ws?token=" + c.token
	since := c.last
	if since > 0 {
		u += fmt.Sprintf("&since=%d", since)
	}
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, u, nil)
	if err != nil {
		return err
	}
	conn.SetReadLimit(16 << 20)
	c.mu.Lock()
	c.conn = conn
	if since > 0 {
		c.resumes++
	}
	c.mu.Unlock()
	return nil
}

// run reads until ctx ends, reconnecting when a connection ends.
func (c *completions) run(ctx context.Context) {
	for ctx.Err() == nil {
		c.read(ctx)
		c.mu.Lock()
		wait := time.Until(c.awayUntil)
		c.mu.Unlock()
		wait = max(wait, 100*time.Millisecond) // a dead replica: do not spin
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := c.dial(ctx); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
		}
	}
}

// read takes the current connection's messages until it ends.
func (c *completions) read(ctx context.Context) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			c.mu.Lock()
			c.err, c.conn = err, nil
			c.mu.Unlock()
			conn.CloseNow()
			return
		}
		var m struct {
			Type string
			Seq  int64
			Data struct {
				TaskID string
				Result *struct{ Files []string }
			}
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		c.mu.Lock()
		if m.Seq > c.last {
			c.last = m.Seq
		}
		switch m.Type {
		case "task_completed":
			c.ids[m.Data.TaskID] = true
			if m.Data.Result != nil {
				c.urls[m.Data.TaskID] = m.Data.Result.Files
			}
		case "resync":
			c.resync++
		}
		c.mu.Unlock()
	}
}

// logLines prints every gateway log line that mentions id.
func logLines(t *testing.T, gws []*gateway, id string) {
	for i, g := range gws {
		for run := 1; run <= g.runs; run++ {
			b, _ := os.ReadFile(filepath.Join(g.dir, fmt.Sprintf("gateway-%d.log", run)))
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, id) {
					t.Logf("replica %d: %s", i, line)
				}
			}
		}
	}
}
