package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// manyTitles builds a workflow of n titled nodes and params of about
// size bytes that set an input of those nodes by title, cycling over them.
func manyTitles(n, size int) (json.RawMessage, map[string]json.RawMessage) {
	var wf strings.Builder
	wf.WriteString("{")
	for i := range n {
		if i > 0 {
			wf.WriteString(",")
		}
		fmt.Fprintf(&wf, `"%d":{"class_type":"CLIPTextEncode","_meta":{"title":"Prompt %d"},"inputs":{"text":"","clip":["0",1]}}`, i, i)
	}
	wf.WriteString("}")
	params := map[string]json.RawMessage{}
	for i, total := 0, 0; total < size; i++ {
		key := fmt.Sprintf("Prompt %d.input_%d", i%n, i)
		params[key] = json.RawMessage(`"a lighthouse at dusk"`)
		total += len(key) + 28
	}
	return json.RawMessage(wf.String()), params
}

// TestResolveParamsManyTitles: about 5 MB of params naming nodes by title
// resolve in time linear in their number. Quadratic resolution (every key
// scanning every node) took minutes of CPU for such a body.
func TestResolveParamsManyTitles(t *testing.T) {
	wf, params := manyTitles(20000, 5<<20)
	p, err := Parse(wf)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.ResolveParams(params)
		done <- err
	}()
	// Linear resolution takes well under a second even on a loaded machine;
	// the bound only fails a quadratic one (tens of seconds and more).
	const budget = 8 * time.Second
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(budget):
		t.Fatalf("ResolveParams of %d params over %d titled nodes took longer than %v", len(params), len(p), budget)
	}
}

// BenchmarkResolveParamsManyTitles measures resolving about 5 MB of params
// by title over 5000 titled nodes (limits.maxNodes' default).
func BenchmarkResolveParamsManyTitles(b *testing.B) {
	wf, params := manyTitles(5000, 5<<20)
	p, err := Parse(wf)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ResolveParams(params); err != nil {
			b.Fatal(err)
		}
	}
}

// TestContextStopsWork: parsing and resolving stop with the context's
// error once it is done, so a request whose client left costs no more.
func TestContextStopsWork(t *testing.T) {
	t.Parallel()
	wf, params := manyTitles(1000, 64<<10)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ParseContext(ctx, wf, Limits{}); !errors.Is(err, context.Canceled) {
		t.Errorf("ParseContext(cancelled) error = %v, want context.Canceled", err)
	}
	p, err := Parse(wf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ResolveParamsContext(ctx, params); !errors.Is(err, context.Canceled) {
		t.Errorf("ResolveParamsContext(cancelled) error = %v, want context.Canceled", err)
	}
}

func TestParseMaxNodes(t *testing.T) {
	t.Parallel()
	wf, _ := manyTitles(11, 0)
	if _, err := ParseContext(t.Context(), wf, Limits{MaxNodes: 11}); err != nil {
		t.Fatalf("11 nodes with MaxNodes 11: %v", err)
	}
	_, err := ParseContext(t.Context(), wf, Limits{MaxNodes: 10})
	var we *Error
	if !errors.Is(err, ErrTooManyNodes) || !errors.As(err, &we) || we.Field != "workflow" {
		t.Fatalf("11 nodes with MaxNodes 10: error = %v, want an *Error on workflow matching ErrTooManyNodes", err)
	}
}

// TestParseRefusesBeforeDecodingNodes: a workflow over MaxNodes costs
// about its own size to refuse, not the tens of times its size decoding
// every node took (a 100,000-node workflow peaked at about 360 MB).
// Not parallel: it reads the process's allocation counter.
func TestParseRefusesBeforeDecodingNodes(t *testing.T) {
	wf, _ := manyTitles(100_000, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ParseContext(t.Context(), wf, Limits{MaxNodes: 5000})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("error = %v, want ErrTooManyNodes", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*uint64(len(wf)) {
		t.Errorf("refusing %d bytes of workflow allocated %d bytes, want at most 3 times its size", len(wf), alloc)
	}
}

// BenchmarkParse parses a workflow of 5000 titled nodes (limits.maxNodes'
// default).
func BenchmarkParse(b *testing.B) {
	wf, _ := manyTitles(5000, 0)
	b.SetBytes(int64(len(wf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseContext(b.Context(), wf, Limits{MaxNodes: 5000}); err != nil {
			b.Fatal(err)
		}
	}
}
