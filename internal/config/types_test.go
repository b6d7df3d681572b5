package config_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/comfyfleet/comfyfleet/internal/config"
)

func TestParsePorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    config.Ports
		wantErr string
	}{
		{in: "8001", want: config.Ports{8001}},
		{in: "8001-8004", want: config.Ports{8001, 8002, 8003, 8004}},
		{in: "8001,8002", want: config.Ports{8001, 8002}},
		{in: " 8001 - 8002 , 9000 ", want: config.Ports{8001, 8002, 9000}},
		{in: "8001-8001", want: config.Ports{8001}},
		{in: "8008-8001", wantErr: "reversed"},
		{in: "0", wantErr: "out of range"},
		{in: "65530-70000", wantErr: "port 70000 out of range 1..65535"},
		{in: "", wantErr: "not a port number"},
		{in: "8001,", wantErr: "not a port number"},
		{in: "80a", wantErr: "not a port number"},
		{in: "1-2-3", wantErr: "not a port number"},
	}
	for _, tt := range tests {
		got, err := config.ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePorts(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePorts(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestPortsDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, json string
		want             config.Ports
	}{
		{"list", "[8001, 8002]", "[8001,8002]", config.Ports{8001, 8002}},
		{"range", `"8001-8003"`, `"8001-8003"`, config.Ports{8001, 8002, 8003}},
		{"bare range", "8001-8002", `"8001-8002"`, config.Ports{8001, 8002}},
		{"one port", "8001", "8001", config.Ports{8001}},
		{"commas", `"8001,8003"`, `"8001,8003"`, config.Ports{8001, 8003}},
	}
	for _, tt := range tests {
		var y, j config.Ports
		if err := yaml.Unmarshal([]byte(tt.yaml), &y); err != nil {
			t.Errorf("%s: yaml: %v", tt.name, err)
		}
		if err := json.Unmarshal([]byte(tt.json), &j); err != nil {
			t.Errorf("%s: json: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, y); diff != "" {
			t.Errorf("%s: yaml mismatch (-want +got):\n%s", tt.name, diff)
		}
		if diff := cmp.Diff(tt.want, j); diff != "" {
			t.Errorf("%s: json mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
	var p config.Ports
	for _, bad := range []string{`"x"`, `true`, `[1.5]`, `{"a":1}`} {
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("json.Unmarshal(%s) into Ports: got no error", bad)
		}
	}
}

func TestTypesEncode(t *testing.T) {
	t.Parallel()
	v := struct {
		D config.Duration `json:"d" yaml:"d"`
		M config.Millis   `json:"m" yaml:"m"`
		P config.Ports    `json:"p" yaml:"p"`
		N config.Ports    `json:"e" yaml:"e,flow"`
	}{config.Duration(90 * time.Minute), config.Millis(30 * time.Second), config.Ports{8001, 8002}, nil}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(j), `{"d":"1h30m","m":30000,"p":[8001,8002],"e":[]}`; got != want {
		t.Errorf("json: got %s, want %s", got, want)
	}
	y, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(y), "d: 1h30m\nm: 30000\np:\n    - 8001\n    - 8002\ne: []\n"; got != want {
		t.Errorf("yaml: got %q, want %q", got, want)
	}
	back := v
	back.D, back.M, back.P = 0, 0, nil
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if back.D != v.D || back.M != v.M || !cmp.Equal(back.P, v.P) {
		t.Errorf("json round trip: got %+v, want %+v", back, v)
	}
}

func TestDurationString(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		0: "0s", time.Hour + 5*time.Second: "1h0m5s", 2 * time.Minute: "2m",
	} {
		if got := config.Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", d, got, want)
		}
	}
}

func TestMillisDecode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"30000": 30 * time.Second, `"30s"`: 30 * time.Second, `"250"`: 250 * time.Millisecond, "null": 7,
	} {
		m := config.Millis(7)
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Errorf("json.Unmarshal(%s): %v", in, err)
			continue
		}
		if time.Duration(m) != want {
			t.Errorf("json.Unmarshal(%s) = %v, want %v", in, time.Duration(m), want)
		}
	}
	var m config.Millis
	for _, bad := range []string{"1.5", `"soon"`, "true", "99999999999999999"} {
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("json.Unmarshal(%s) into Millis: got no error", bad)
		}
	}
}

func TestPrefixesDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, json string
		want             []string
	}{
		{"list", `["10.0.0.0/8", "127.0.0.1", "::1"]`, `["10.0.0.0/8","127.0.0.1","::1"]`, []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}},
		{"comma-separated", `"10.0.0.0/8, 192.168.1.7"`, `"10.0.0.0/8, 192.168.1.7"`, []string{"10.0.0.0/8", "192.168.1.7/32"}},
		{"host bits dropped, mapped IPv4 unmapped", `["10.1.2.3/8", "::ffff:10.0.0.1"]`, `["10.1.2.3/8","::ffff:10.0.0.1"]`, []string{"10.0.0.0/8", "10.0.0.1/32"}},
		{"empty", `[]`, `[]`, []string{}},
	}
	for _, tt := range tests {
		var fromYAML, fromJSON config.Prefixes
		if err := yaml.Unmarshal([]byte(tt.yaml), &fromYAML); err != nil {
			t.Errorf("%s: yaml: %v", tt.name, err)
		}
		if err := json.Unmarshal([]byte(tt.json), &fromJSON); err != nil {
			t.Errorf("%s: json: %v", tt.name, err)
		}
		for _, got := range []config.Prefixes{fromYAML, fromJSON} {
			b, _ := json.Marshal(got)
			var strs []string
			_ = json.Unmarshal(b, &strs)
			if diff := cmp.Diff(tt.want, strs); diff != "" {
				t.Errorf("%s: mismatch (-want +got):\n%s", tt.name, diff)
			}
		}
	}
	var p config.Prefixes
	for _, bad := range []string{`["10.0.0.0/33"]`, `["proxy.lan"]`, `[1]`, `5`} {
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("json.Unmarshal(%s) into Prefixes: got no error", bad)
		}
	}
}
