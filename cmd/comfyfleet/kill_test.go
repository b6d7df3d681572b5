package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// TestKill9AndRestart runs the gateway as a separate process, kills it with
// SIGKILL while 200 tasks are in flight on 8 simulated instances, starts it
// again on the same data dir, and checks that all 200 complete and that the
// simulators ran each exactly once.
func TestKill9AndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	const tasks, instances = 200, 8
	bin := buildBinary(t)
	log := comfysim.NewLog()
	sims, err := comfysim.StartFleet(instances, "127.0.0.1:0", comfysim.Options{Log: log, StepDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range sims {
			s.Close()
		}
	}()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := writeConfig(t, dir, addr, sims, "")
	g := &gateway{t: t, bin: bin, cfg: cfgPath, dir: dir, url: "http://" + addr}

	g.start()
	token := g.login()
	ids := g.submitAll(token, tasks)
	// Kill while runs are in flight: some done, most still queued or running.
	apptest.Eventually(t, 60*time.Second, "the first completions", func() bool { return g.completed(token) >= 20 })
	if inFlight := tasks - g.completed(token); inFlight < 50 {
		t.Fatalf("only %d tasks left in flight; the kill would prove little", inFlight)
	}
	g.kill()
	t.Logf("killed with %d tasks started on the simulators", len(log.PromptIDs()))

	g.start()
	token = g.login()
	apptest.Eventually(t, 120*time.Second, "all tasks completed after the restart", func() bool { return g.completed(token) == tasks })
	for _, id := range ids {
		if n := log.Count(id); n != 1 {
			t.Errorf("task %s ran %d times on the simulators", id, n)
		}
	}
	if o := log.Overlaps(); len(o) != 0 {
		t.Errorf("runs overlapped: %v", o)
	}
	g.stop()
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "comfyfleet")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes a gateway config for the simulators; extra is more YAML.
func writeConfig(t *testing.T, dir, addr string, sims []*comfysim.Sim, extra string) string {
	t.Helper()
	var ports []string
	for _, s := range sims {
		ports = append(ports, fmt.Sprint(apptest.Port(s.Addr())))
	}
	yaml := fmt.Sprintf(`server:
  listen: %q
dataDir: %q
healthCheck:
  interval: 200
  timeout: 200
servers:
  - id: sims
    ip: 127.0.0.1
    ports: [%s]
%s`, addr, filepath.Join(dir, "data"), strings.Join(ports, ", "), extra)
	path := filepath.Join(dir, "comfyfleet.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// gateway is the comfyfleet process under test.
type gateway struct {
	t        *testing.T
	bin, cfg string
	dir, url string
	sims     []*comfysim.Sim
	cmd      *exec.Cmd
	runs     int
}

func (g *gateway) start() {
	g.t.Helper()
	g.runs++
	logf, err := os.Create(filepath.Join(g.dir, fmt.Sprintf("gateway-%d.log", g.runs)))
	if err != nil {
		g.t.Fatal(err)
	}
	g.cmd = exec.Command(g.bin, "serve", "--config", g.cfg)
	g.cmd.Env = append(os.Environ(), "COMFYFLEET_DEMO=true")
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { _ = g.cmd.Process.Kill(); _ = g.cmd.Wait(); logf.Close() })
	apptest.Eventually(g.t, 30*time.Second, "the gateway to answer", func() bool {
		resp, err := http.Get(g.url + "/api/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (g *gateway) kill() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		g.t.Fatal(err)
	}
	_ = g.cmd.Wait()
}

// signal sends sig to the gateway process (SIGSTOP freezes it, SIGCONT resumes it).
func (g *gateway) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) stop() {
	g.t.Helper()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			g.t.Errorf("gateway exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		g.t.Errorf("gateway did not stop within 20s of SIGTERM")
	}
}

func (g *gateway) do(method, path, token string, body any, out any) int {
	g.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(context.Background(), method, g.url+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	if out != nil {
		_ = json.Unmarshal(env.Data, out)
	}
	return resp.StatusCode
}

func (g *gateway) login() string {
	var v struct{ Token string }
	if st := g.do("POST", "/api/auth/login", "", map[string]string{"username": "admin", "password": "admin123"}, &v); st != 200 {
		g.t.Fatalf("login: %d", st)
	}
	return v.Token
}

func (g *gateway) submitAll(token string, n int) []string {
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				var v struct{ ID string }
				if st := g.do("POST", "/api/tasks", token, map[string]any{"workflow": sampleWorkflow(i)}, &v); st != 200 {
					g.t.Errorf("submit %d: status %d", i, st)
				}
				ids[i] = v.ID
			}
		})
	}
	wg.Wait()
	return ids
}

func (g *gateway) completed(token string) int {
	var o struct{ CompletedTasks int }
	g.do("GET", "/api/monitor/overview", token, nil, &o)
	return o.CompletedTasks
}

// sampleWorkflow is a small text-to-image workflow with 10 sampler steps.
func sampleWorkflow(i int) map[string]any {
	n := func(class string, in map[string]any) map[string]any {
		return map[string]any{"class_type": class, "inputs": in}
	}
	return map[string]any{
		"4": n("CheckpointLoaderSimple", map[string]any{"ckpt_name": "v1-5-pruned-emaonly.safetensors"}),
		"6": n("CLIPTextEncode", map[string]any{"text": fmt.Sprintf("task %d", i), "clip": []any{"4", 1}}),
		"7": n("CLIPTextEncode", map[string]any{"text": "", "clip": []any{"4", 1}}),
		"5": n("EmptyLatentImage", map[string]any{"width": 64, "height": 64, "batch_size": 1}),
		"3": n("KSampler", map[string]any{"seed": i, "steps": 10, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
			"denoise": 1.0, "model": []any{"4", 0}, "positive": []any{"6", 0}, "negative": []any{"7", 0}, "latent_image": []any{"5", 0}}),
		"8": n("VAEDecode", map[string]any{"samples": []any{"3", 0}, "vae": []any{"4", 2}}),
		"9": n("SaveImage", map[string]any{"images": []any{"8", 0}, "filename_prefix": fmt.Sprintf("kill/%d", i)}),
	}
}
