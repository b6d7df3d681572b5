package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kernelAddr writes ip:port as /proc/net/tcp does: each 32-bit word of the
// network-order address read in host order, in hex, then the port in hex.
func kernelAddr(ip net.IP, port int) string {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	var b strings.Builder
	for i := 0; i < len(ip); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(ip[i:i+4]))
	}
	return fmt.Sprintf("%s:%04X", b.String(), port)
}

func TestParseSockAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip   string
		port int
	}{{"127.0.0.1", 8188}, {"0.0.0.0", 1}, {"10.1.2.3", 65535}, {"::1", 8189}, {"::", 80}, {"fe80::1:2", 443}} {
		ip, port, err := parseSockAddr(kernelAddr(net.ParseIP(tc.ip), tc.port))
		if err != nil {
			t.Errorf("%s: %v", tc.ip, err)
			continue
		}
		if !ip.Equal(net.ParseIP(tc.ip)) || port != tc.port {
			t.Errorf("parseSockAddr(%s) = %s, %d; want %s, %d", kernelAddr(net.ParseIP(tc.ip), tc.port), ip, port, tc.ip, tc.port)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:zz", "01007F:1FFC", "XX00007F:1FFC"} {
		if _, _, err := parseSockAddr(bad); err == nil {
			t.Errorf("parseSockAddr(%q): no error", bad)
		}
	}
}

// fakeProc lays out a /proc with net/tcp, net/tcp6 and processes whose fd
// folders link to sockets.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	line := func(sl int, ip string, port int, state string, inode int) string {
		return fmt.Sprintf("  %d: %s %s %s 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0",
			sl, kernelAddr(net.ParseIP(ip), port), kernelAddr(net.ParseIP(ip), 0), state, inode)
	}
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
	tcp := []string{header,
		line(0, "127.0.0.1", 8188, "0A", 111), // ComfyUI on 8188
		line(1, "127.0.0.1", 8188, "01", 222), // a client's connection to it: not listening
		line(2, "0.0.0.0", 6379, "0A", 333),   // every address
		line(3, "10.9.9.9", 8190, "0A", 555),  // another address only
	}
	tcp6 := []string{header, line(0, "::", 8189, "0A", 444)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "net"), 0o755))
	must(os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(strings.Join(tcp, "\n")+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "net", "tcp6"), []byte(strings.Join(tcp6, "\n")+"\n"), 0o644))
	links := map[string]string{
		"100/fd/0": "/dev/null", "100/fd/3": "socket:[111]", // the ComfyUI server
		"200/fd/4": "socket:[222]", "300/fd/5": "socket:[333]", "301/fd/9": "socket:[333]",
		"400/fd/7": "socket:[444]", "500/fd/1": "pipe:[555]", "self/fd/3": "socket:[111]",
	}
	for name, target := range links {
		must(os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755))
		must(os.Symlink(target, filepath.Join(root, name)))
	}
	return root
}

func TestLocalListeners(t *testing.T) {
	t.Parallel()
	root := fakeProc(t)
	tests := []struct {
		addr string
		want []int
	}{
		{"127.0.0.1:8188", []int{100}},
		{"localhost:8188", []int{100}},
		{"[::1]:8189", []int{400}},          // listening on :: covers ::1
		{"127.0.0.1:8189", []int{400}},      // and IPv4, dual stack
		{"127.0.0.1:6379", []int{300, 301}}, // every holder of the socket
		{"127.0.0.1:8190", nil},             // listening on another address only
		{"127.0.0.1:9999", nil},             // nothing listens
		{"192.0.2.1:8188", nil},             // not an address of this machine
	}
	for _, tc := range tests {
		got, err := localListeners(t.Context(), root, tc.addr)
		if err != nil {
			t.Errorf("localListeners(%s): %v", tc.addr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("localListeners(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if _, err := localListeners(t.Context(), root, "127.0.0.1"); err == nil {
		t.Error("an address without a port: no error")
	}
}
