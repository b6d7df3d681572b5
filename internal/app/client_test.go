package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/client"
	"github.com/comfyfleet/comfyfleet/internal/app/apptest"
	"github.com/comfyfleet/comfyfleet/internal/comfysim"
)

// cutProxy forwards TCP to a gateway and can cut every connection it
// carries, as a network failure would.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
			p.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestGoClient drives the gateway through the public Go client: upload,
// submit with a param and a file, wait with progress events, download the
// outputs, list, cancel, and the event stream's reconnection after the
// network drops.
func TestGoClient(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1, Sim: comfysim.Options{StepDelay: 20 * time.Millisecond}})
	proxy := newCutProxy(t, e.App().Addr())
	ctx := t.Context()
	c, err := client.New(proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, apptest.User, "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if _, err := c.Login(ctx, apptest.User, apptest.UserPass); err != nil {
		t.Fatal(err)
	}
	e.Eventually(10*time.Second, "the instance alive", func() bool {
		is, err := c.ListInstances(ctx)
		return err == nil && len(is) == 1 && is[0].Alive
	})
	f, err := c.UploadFile(ctx, "in.png", bytes.NewReader(pngBytes(t)))
	if err != nil {
		t.Fatal(err)
	}
	wf := t2i(6, "client")
	wf["10"] = node("LoadImage", map[string]any{"image": "placeholder.png"})
	raw, _ := json.Marshal(wf)
	task, err := c.SubmitTask(ctx, &client.TaskRequest{Workflow: raw,
		Params: map[string]any{"Positive.text": "a cat", "10.image": client.FileParam(f.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	var steps []client.ProgressData
	done, err := c.WaitTask(ctx, task.ID, func(p client.ProgressData) { steps = append(steps, p) })
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != client.StatusCompleted || done.Result == nil || len(done.Result.Files) == 0 {
		t.Fatalf("task = %+v, want completed with files", done)
	}
	sawStep := false
	for _, p := range steps {
		sawStep = sawStep || (p.ClassType == "KSampler" && p.Max == 6 && p.Value > 0)
	}
	if !sawStep {
		t.Errorf("progress %+v: want KSampler steps of 6", steps)
	}
	for _, outs := range done.Result.Outputs {
		for _, o := range outs {
			var buf bytes.Buffer
			if n, err := c.Download(ctx, o.URL, &buf); err != nil || n == 0 || !bytes.HasPrefix(buf.Bytes(), []byte("\x89PNG")) {
				t.Errorf("download %s: %d bytes, %v", o.URL, n, err)
			}
		}
	}
	list, err := c.ListTasks(ctx, client.ListTasksOptions{Statuses: []string{client.StatusCompleted}})
	if err != nil || list.Total != 1 || list.Items[0].ID != task.ID {
		t.Fatalf("ListTasks = %+v, %v", list, err)
	}
	if _, err := c.GetTask(ctx, "no-such-task"); !client.IsNotFound(err) {
		t.Errorf("GetTask of an unknown id: %v, want a 404", err)
	}
	var apiErr *client.APIError
	if _, err := c.SubmitTask(ctx, &client.TaskRequest{Workflow: json.RawMessage(`{}`)}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("empty workflow: %v, want a 400 APIError", err)
	}

	// The stream survives a network cut: Reconnected, then events again.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := c.Subscribe(sctx, client.StreamOptions{MinBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	proxy.cut()
	waitEvent(t, s, func(ev client.Event) bool { return ev.Type == client.EventReconnected })
	slow, err := c.SubmitTask(ctx, &client.TaskRequest{Workflow: raw,
		Params: map[string]any{"10.image": client.FileParam(f.ID), "3.steps": 200}})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, s, func(ev client.Event) bool { return ev.Type == client.EventTaskProgress && ev.TaskID() == slow.ID })
	if _, err := c.CancelTask(ctx, slow.ID); err != nil {
		t.Fatal(err)
	}
	end := waitEvent(t, s, func(ev client.Event) bool { return ev.Type == client.EventTaskCancelled && ev.TaskID() == slow.ID })
	if d, err := end.End(); err != nil || d.TaskID != slow.ID {
		t.Errorf("task_cancelled data = %+v, %v", d, err)
	}
}

func waitEvent(t *testing.T, s *client.Stream, match func(client.Event) bool) client.Event {
	t.Helper()
	for ev := range s.Events() {
		if match(ev) {
			return ev
		}
	}
	t.Fatalf("the stream ended before the event: %v", s.Err())
	return client.Event{}
}
