package bench

import (
	"slices"
	"testing"
)

func TestGatewayServers(t *testing.T) {
	t.Parallel()
	spec := gatewaySpec{ports: []int{9001, 9002}, addrs: []string{"127.0.0.1:8188", "[::1]:8189", "gpu1:8188", "127.0.0.1:8190"}}
	got, err := spec.servers()
	if err != nil {
		t.Fatal(err)
	}
	want := []server{
		{host: "127.0.0.1", ports: []string{"9001", "9002", "8188", "8190"}},
		{host: "::1", ports: []string{"8189"}},
		{host: "gpu1", ports: []string{"8188"}},
	}
	if !slices.EqualFunc(got, want, func(a, b server) bool { return a.host == b.host && slices.Equal(a.ports, b.ports) }) {
		t.Errorf("servers = %+v, want %+v", got, want)
	}
	if _, err := (gatewaySpec{addrs: []string{"no-port"}}).servers(); err == nil {
		t.Error("an address without a port: no error")
	}
}
