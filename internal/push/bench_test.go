package push

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/comfyfleet/comfyfleet/internal/event"
)

// BenchmarkFanout measures events per second through the hub to N clients
// over real loopback WebSockets. Events are published in batches smaller
// than the send buffer and each batch waits for every client, so no client
// overflows and every event reaches all N.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	const batch = 128
	h := newHarness(b, Options{}, testHooks{})
	progress := make([]chan struct{}, n)
	var wg sync.WaitGroup
	for i := range progress {
		progress[i] = make(chan struct{}, 1)
		c := h.dial(fmt.Sprintf("user%d", i), true)
		c.next() // global_status: registered
		wg.Go(func() { readCounting(c, batch, b.N, progress[i]) })
	}
	ev := taskEvent(event.TypeTaskProgress, "3f1d2c9e-5b7a-4c1e-9d2f-0a6b8c4e7f10", "user0")
	ctx := context.Background()

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= b.N; i++ {
		if err := h.ps.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
		if i%batch == 0 || i == b.N {
			for _, p := range progress {
				<-p
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "deliveries/s")
	if err := h.stop(); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	if d := h.hub.Dropped(); d != 0 {
		b.Fatalf("%d clients dropped", d)
	}
}

// readCounting reads until the connection ends and signals progress after
// every batch of task events and after the last of total.
func readCounting(c *client, batch, total int, progress chan<- struct{}) {
	prefix := []byte(`{"type":"` + event.TypeTaskProgress + `"`)
	got := 0
	for {
		_, msg, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		if !bytes.HasPrefix(msg, prefix) {
			continue // global_status
		}
		got++
		if got%batch == 0 || got == total {
			progress <- struct{}{}
		}
	}
}

// BenchmarkDispatch measures the hub's own share of a fan-out (entitlement
// check, one encoding, a non-blocking offer to each queue) to N connections,
// without sockets. Queues are drained inline between batches.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchDispatch(b, n) })
	}
}

func benchDispatch(b *testing.B, n int) {
	const buffer = 256
	h := NewHub(newFakePubSub(), Options{SendBuffer: buffer})
	conns := make([]*conn, n)
	for i := range conns {
		c := &conn{hub: h, client: Client{Username: fmt.Sprintf("user%d", i%10), Admin: i%2 == 0},
			send: make(chan []byte, buffer), quit: make(chan struct{})}
		conns[i] = c
		h.conns[c] = struct{}{}
	}
	ev := taskEvent(event.TypeTaskProgress, "3f1d2c9e-5b7a-4c1e-9d2f-0a6b8c4e7f10", "user1")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		h.dispatch(ev)
		if i%buffer == buffer-1 {
			drain(conns)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if d := h.Dropped(); d != 0 {
		b.Fatalf("%d connections dropped", d)
	}
}

func drain(conns []*conn) {
	for _, c := range conns {
		for len(c.send) > 0 {
			<-c.send
		}
	}
}
