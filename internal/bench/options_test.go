package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestComfyBases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		urls []string
		want []string
		err  string
	}{
		{"none", nil, nil, ""},
		{"two", []string{"http://127.0.0.1:8188", "http://localhost:8189/"}, []string{"http://127.0.0.1:8188", "http://localhost:8189"}, ""},
		{"IPv6", []string{"http://[::1]:8188"}, []string{"http://[::1]:8188"}, ""},
		{"https", []string{"https://127.0.0.1:8188"}, nil, "want http://host:port"},
		{"no port", []string{"http://127.0.0.1"}, nil, "want http://host:port"},
		{"a path", []string{"http://127.0.0.1:8188/comfy"}, nil, "want http://host:port"},
		{"a query", []string{"http://127.0.0.1:8188/?x=1"}, nil, "want http://host:port"},
		{"no scheme", []string{"127.0.0.1:8188"}, nil, "127.0.0.1:8188"},
		{"twice", []string{"http://127.0.0.1:8188", "http://127.0.0.1:8188/"}, nil, "given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := comfyBases(tc.urls)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("comfyBases(%q) error = %v, want one containing %q", tc.urls, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("comfyBases(%q) = %q, %v; want %q", tc.urls, got, err, tc.want)
			}
		})
	}
}

// TestRunRefusesComfyElsewhere checks the options before anything starts.
func TestRunRefusesComfyElsewhere(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  Options
		names []string
		err   string
	}{
		{"another scenario", Options{Comfy: []string{"http://127.0.0.1:8188"}}, []string{"overhead", "gap"}, "overhead scenario only"},
		{"all", Options{Comfy: []string{"http://127.0.0.1:8188"}}, []string{"all"}, "overhead scenario only"},
		{"pids without URLs", Options{ComfyPIDs: []int{1}}, []string{"overhead"}, "without ComfyUI URLs"},
		{"a bad URL", Options{Comfy: []string{"http://127.0.0.1"}}, []string{"overhead"}, "want http://host:port"},
		{"a negative quiet threshold", Options{QuietBelow: -1}, []string{"overhead"}, "want a number of cores above 0"},
		{"an S3 endpoint without a bucket", Options{S3Endpoint: "http://127.0.0.1:8333"}, []string{"storage"}, "go together"},
		{"an S3 bucket without an endpoint", Options{S3Bucket: "fleet"}, []string{"storage"}, "go together"},
		{"an S3 endpoint with credentials", Options{S3Endpoint: "http://key:secret@127.0.0.1:8333", S3Bucket: "fleet"}, []string{"storage"}, "without a path or credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Gateway = []string{"comfyfleet-not-started"}
			tc.opts.TempDir = t.TempDir()
			_, err := Run(t.Context(), tc.opts, tc.names)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Run error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}
