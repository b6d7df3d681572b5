package comfysim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkPromptThroughput drives instances the way a gateway does: one
// client per instance holds /ws open, submits zero-duration prompts
// (EmptyImage -> SaveImage, a new colour each time so nothing is cached and
// every prompt writes a real PNG) and counts a prompt done at its
// executing{node: null}. "window" is how many prompts a client keeps in
// flight. Reports prompts/s over all instances.
func BenchmarkPromptThroughput(b *testing.B) {
	for _, tc := range []struct{ sims, window int }{{1, 1}, {1, 8}, {8, 1}, {8, 8}} {
		b.Run(fmt.Sprintf("sims=%d/window=%d", tc.sims, tc.window), func(b *testing.B) {
			benchThroughput(b, tc.sims, tc.window)
		})
	}
}

func benchThroughput(b *testing.B, nsims, window int) {
	sims, err := StartFleet(nsims, "127.0.0.1:0", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll(sims)
	clients := make([]*benchClient, nsims)
	for i, s := range sims {
		clients[i] = newBenchClient(b, s, fmt.Sprintf("bench-%d", i))
		defer clients[i].close()
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(b, &next, int64(b.N), window)
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "prompts/s")
}

// benchClient is a minimal gateway-like client: no JSON decoding of frames,
// just a look for the final executing frame.
type benchClient struct {
	s    *Sim
	id   string
	http *http.Client
	ws   *websocket.Conn
	done chan string // prompt ids whose executing null arrived
	rd   sync.WaitGroup
}

func newBenchClient(b *testing.B, s *Sim, id string) *benchClient {
	c := &benchClient{s: s, id: id, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}, done: make(chan string, 1024)}
	ws, _, err := websocket.Dial(context.Background(), strings.Replace(s.URL(), "http", "ws", 1)+"/ws?clientId="+id, nil)
	if err != nil {
		b.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	c.ws = ws
	c.rd.Add(1)
	go c.read()
	return c
}

var finalPrefix = []byte(`{"type": "executing", "data": {"node": null, "prompt_id": "`)

func (c *benchClient) read() {
	defer c.rd.Done()
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		if bytes.HasPrefix(data, finalPrefix) {
			rest := data[len(finalPrefix):]
			c.done <- string(rest[:bytes.IndexByte(rest, '"')])
		}
	}
}

func (c *benchClient) close() {
	c.ws.CloseNow()
	c.rd.Wait()
	c.http.CloseIdleConnections()
}

// run submits prompts (numbered from next) until n were claimed, keeping up
// to window in flight, and waits for all of them.
func (c *benchClient) run(b *testing.B, next *atomic.Int64, n int64, window int) {
	inFlight := 0
	for {
		i := next.Add(1)
		if i > n {
			break
		}
		if inFlight == window {
			<-c.done
			inFlight--
		}
		c.submit(b, int(i))
		inFlight++
	}
	for ; inFlight > 0; inFlight-- {
		<-c.done
	}
}

func (c *benchClient) submit(b *testing.B, i int) {
	body := `{"client_id": "` + c.id + `", "prompt": ` + trivialPrompt(i&0xffffff, "bench") + `}`
	res, err := c.http.Post(c.s.URL()+"/prompt", "application/json", strings.NewReader(body))
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		b.Errorf("POST /prompt: %d", res.StatusCode)
	}
}
