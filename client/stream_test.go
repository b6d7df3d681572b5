package client_test

import (
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
)

// cutProxy forwards TCP connections to a gateway; cut closes every
// connection and refuses new ones until resume.
type cutProxy struct {
	ln     net.Listener
	target string

	// mu guards conns and down.
	mu    sync.Mutex
	conns []net.Conn
	down  bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close() })
		p.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestStreamResumes: a stream whose connection is lost while a task
// completes still delivers the task's completion once it reconnects: it
// resumes after the last numbered message it delivered.
func TestStreamResumes(t *testing.T) {
	t.Parallel()
	e := apptest.Start(t, apptest.Options{Instances: 1})
	token := e.Login(apptest.AdminUser, apptest.AdminPass)
	p := startProxy(t, e.App().Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	via, err := client.New("http://"+p.ln.Addr().String(), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	direct, err := client.New(e.URL(), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	s, err := via.Subscribe(ctx, client.StreamOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	workflow := func(color int) json.RawMessage {
		b, _ := json.Marshal(map[string]any{
			"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 16, "height": 16, "batch_size": 1, "color": color}},
			"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "resume"}},
		})
		return b
	}
	// A first task, seen live: the stream now has a position.
	first, err := direct.SubmitTask(ctx, &client.TaskRequest{Workflow: workflow(1)})
	if err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, s, first.ID, false)

	// Away: a second task runs and completes meanwhile.
	p.cut()
	second, err := direct.SubmitTask(ctx, &client.TaskRequest{Workflow: workflow(2)})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := direct.WaitTask(ctx, second.ID, nil); err != nil || done.Status != client.StatusCompleted {
		t.Fatalf("second task: %+v, %v", done, err)
	}
	p.resume()
	waitCompleted(t, s, second.ID, true)
}

// waitCompleted reads s until task id's task_completed; reconnect says a
// Reconnected must come first. A resync fails the test.
func waitCompleted(t *testing.T, s *client.Stream, id string, reconnect bool) {
	t.Helper()
	reconnected := false
	for ev := range s.Events() {
		switch ev.Type {
		case client.EventReconnected:
			reconnected = true
		case client.EventResync:
			t.Fatalf("resync after a short absence: %s", ev.Data)
		case client.EventTaskCompleted:
			if ev.TaskID() != id {
				continue
			}
			if ev.Seq == 0 {
				t.Errorf("task_completed without its seq")
			}
			if reconnect && !reconnected {
				t.Errorf("task_completed of %s before the stream reconnected", id)
			}
			return
		}
	}
	t.Fatalf("stream ended before task %s completed: %v", id, errors.Join(s.Err()))
}
