package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// Target of the overhead scenario: gateway tasks/s as a share of direct.
const overheadTarget = 0.9

// overheadRounds alternates the paths this many times to spread noise.
const overheadRounds = 2

// runOverhead runs trivial prompts one after another on one instance, each
// waiting for the previous to finish: straight to ComfyUI, straight to
// ComfyUI fetching the outputs, and through the gateway.
func runOverhead(ctx context.Context, e *env) (*Table, error) {
	s := e.sizes
	direct, err := startSims(1, comfysim.Options{})
	if err != nil {
		return nil, err
	}
	defer direct.close()
	fleet, err := startSims(1, comfysim.Options{})
	if err != nil {
		return nil, err
	}
	defer fleet.close()
	g, err := e.startGateway(ctx, gatewaySpec{label: "overhead", ports: fleet.ports()})
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if err := g.admin.waitAlive(ctx, 1, time.Minute); err != nil {
		return nil, err
	}
	paths := []*serialPath{
		{name: "direct: POST /prompt, wait executing{node:null}", run: e.directRunner(direct.list[0].URL(), false)},
		{name: "direct + GET /history + GET /view", run: e.directRunner(direct.list[0].URL(), true)},
		{name: "gateway (" + g.spec.store + "): POST /api/tasks, wait task_completed", run: gatewayRunner(g)},
	}
	g.profile(ctx, "")
	per := max(s.OverheadTasks/overheadRounds, 1)
	seq := 0
	for round := range overheadRounds {
		for _, p := range paths {
			if err := p.measure(ctx, per, &seq); err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
		}
		e.logf("round %d of %d done", round+1, overheadRounds)
	}
	if err := checkRuns(fleet.log, per*overheadRounds); err != nil {
		return nil, err
	}
	t := &Table{
		Title:  "overhead: one instance, trivial prompts one at a time",
		Header: []string{"path", "tasks", "tasks/s", "p50", "p99", "vs direct", "target", "result"},
	}
	base := paths[0].rate()
	for i, p := range paths {
		sum := summarize(p.latencies)
		target, result := "baseline", "—"
		if i == 2 {
			target = fmt.Sprintf("≥ %.2f", overheadTarget)
			result = verdict(p.rate()/base >= overheadTarget, fmtRatio(p.rate()/base))
		}
		t.add(p.name, itoa(len(p.latencies)), fmt.Sprintf("%.0f", p.rate()), fmtMs(sum.p50), fmtMs(sum.p99),
			fmtRatio(p.rate()/base), target, result)
	}
	t.note("each path runs %d rounds of %s tasks, alternating; a task is submitted when the previous one's completion arrived", overheadRounds, itoa(per))
	t.note("the gateway also copies each output PNG into its file store before task_completed; the second row does the same fetch by hand")
	return t, nil
}

// serialPath is one way of running a task, measured one task at a time.
type serialPath struct {
	name      string
	run       func(ctx context.Context) (runOne func(ctx context.Context, i int) error, stop func(), err error)
	latencies []time.Duration
	elapsed   time.Duration
}

func (p *serialPath) rate() float64 {
	return float64(len(p.latencies)) / p.elapsed.Seconds()
}

// measure runs n tasks in a row.
func (p *serialPath) measure(ctx context.Context, n int, seq *int) error {
	runOne, stop, err := p.run(ctx)
	if err != nil {
		return err
	}
	defer stop()
	start := time.Now()
	for range n {
		t0 := time.Now()
		if err := runOne(ctx, *seq); err != nil {
			return err
		}
		*seq++
		p.latencies = append(p.latencies, time.Since(t0))
	}
	p.elapsed += time.Since(start)
	return nil
}

// directRunner talks to one ComfyUI: a socket with a client id, then per
// task POST /prompt and wait for executing{node:null} of that prompt; with
// outputs, also GET /history/{id} and GET /view of every image.
func (e *env) directRunner(base string, outputs bool) func(ctx context.Context) (func(context.Context, int) error, func(), error) {
	return func(ctx context.Context) (func(context.Context, int) error, func(), error) {
		clientID := "bench-" + randomHex(8)
		ws, err := dialComfy(ctx, base, clientID)
		if err != nil {
			return nil, nil, err
		}
		runOne := func(ctx context.Context, i int) error {
			id, err := e.postPrompt(ctx, base, trivialPrompt(i), clientID)
			if err != nil {
				return err
			}
			if err := ws.waitDone(ctx, id); err != nil {
				return err
			}
			if outputs {
				return e.fetchOutputs(ctx, base, id)
			}
			return nil
		}
		return runOne, ws.close, nil
	}
}

// gatewayRunner submits a task and waits for its task_completed on /ws.
func gatewayRunner(g *gateway) func(ctx context.Context) (func(context.Context, int) error, func(), error) {
	return func(ctx context.Context) (func(context.Context, int) error, func(), error) {
		done := make(chan string, 1024)
		st, err := g.admin.dialEvents(ctx, func(m *message, _ time.Time) {
			if m.Type == "task_completed" || m.Type == "task_failed" {
				done <- m.Type + " " + m.Data.TaskID
			}
		})
		if err != nil {
			return nil, nil, err
		}
		runOne := func(ctx context.Context, i int) error {
			id, err := g.admin.submit(ctx, trivialTask(i))
			if err != nil {
				return err
			}
			return waitID(ctx, done, "task_completed "+id, st.done)
		}
		return runOne, st.close, nil
	}
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

// comfySocket is a ComfyUI /ws connection that reports finished prompts.
type comfySocket struct {
	conn  *websocket.Conn
	done  chan string
	ended chan struct{}
}

func dialComfy(ctx context.Context, base, clientID string) (*comfySocket, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?clientId="+clientID, nil)
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(16 << 20)
	s := &comfySocket{conn: conn, done: make(chan string, 1024), ended: make(chan struct{})}
	go s.read()
	return s, nil
}

func (s *comfySocket) read() {
	defer close(s.ended)
	for {
		typ, b, err := s.conn.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageText || !strings.Contains(string(b), `"executing"`) {
			continue
		}
		var m struct {
			Type string `json:"type"`
			Data struct {
				Node     *string `json:"node"`
				PromptID string  `json:"prompt_id"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &m) == nil && m.Type == "executing" && m.Data.Node == nil {
			s.done <- m.Data.PromptID
		}
	}
}

func (s *comfySocket) waitDone(ctx context.Context, id string) error {
	return waitID(ctx, s.done, id, s.ended)
}

func (s *comfySocket) close() {
	_ = s.conn.Close(websocket.StatusNormalClosure, "")
	<-s.ended
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
