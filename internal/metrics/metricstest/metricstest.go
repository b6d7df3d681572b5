// Package metricstest scrapes and reads the gateway's Prometheus text
// format in tests: it parses a /metrics answer with expfmt and looks up one
// series by name and labels.
package metricstest

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is one parsed scrape, by metric name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url (with a bearer token when token is set), checks that the
// answer is 200 in the text format and parses it.
func Scrape(t testing.TB, url, token string) Families {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want the text format", url, ct)
	}
	return Parse(t, resp.Body)
}

// Parse reads the Prometheus text format.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// Find returns the series of name whose labels include the given
// name/value pairs, or nil.
func (f Families) Find(name string, labels ...string) *dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		if hasLabels(m, labels) {
			return m
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Value is the value of a counter or gauge series; a missing series fails the test.
func (f Families) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	m := f.Find(name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v; have %s", name, labels, f.Names(name))
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("series %s%v is neither a counter nor a gauge", name, labels)
	return 0
}

// Histogram is the histogram series of name with labels; a missing series fails the test.
func (f Families) Histogram(t testing.TB, name string, labels ...string) *dto.Histogram {
	t.Helper()
	m := f.Find(name, labels...)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s%v; have %s", name, labels, f.Names(name))
	}
	return m.GetHistogram()
}

// Names describes the series of name (or every family name when name has
// none), for failure messages.
func (f Families) Names(name string) string {
	fam := f[name]
	if fam == nil {
		names := make([]string, 0, len(f))
		for n := range f {
			if strings.HasPrefix(n, "comfyfleet_") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		return fmt.Sprintf("no %s among %v", name, names)
	}
	var out []string
	for _, m := range fam.GetMetric() {
		var ls []string
		for _, lp := range m.GetLabel() {
			ls = append(ls, lp.GetName()+"="+lp.GetValue())
		}
		out = append(out, "{"+strings.Join(ls, ",")+"}")
	}
	return strings.Join(out, " ")
}
