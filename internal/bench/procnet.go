package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// localListeners finds the processes of this machine that listen on a
// TCP host:port, reading procRoot (normally "/proc"): the sockets in
// LISTEN state on that port and the host's address (or the unspecified
// address) in net/tcp and net/tcp6, then the processes holding one of them
// among their file descriptors. It returns no pid, and no error, when the
// host is not an address of this machine.
func localListeners(ctx context.Context, procRoot, hostport string) ([]int, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("bench: port %q: %w", portText, err)
	}
	ips, err := localIPs(ctx, host)
	if err != nil || len(ips) == 0 {
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(procRoot, "net", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found, err := parseListeners(f, ips, port)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		for _, ino := range found {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	return socketHolders(procRoot, inodes)
}

// localIPs resolves host and keeps the addresses that belong to this
// machine: loopback, or assigned to one of its interfaces.
func localIPs(ctx context.Context, host string) ([]net.IP, error) {
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("bench: resolve %s: %w", host, err)
	}
	own, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("bench: interface addresses: %w", err)
	}
	var out []net.IP
	for _, a := range addrs {
		local := a.IP.IsLoopback() || slices.ContainsFunc(own, func(o net.Addr) bool {
			n, ok := o.(*net.IPNet)
			return ok && n.IP.Equal(a.IP)
		})
		if local {
			out = append(out, a.IP)
		}
	}
	return out, nil
}

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// parseListeners reads a /proc/net/tcp or tcp6 table and returns the inodes
// of the sockets listening on port at one of ips or at the unspecified
// address.
func parseListeners(r io.Reader, ips []net.IP, port int) ([]uint64, error) {
	sc := bufio.NewScanner(r)
	var out []uint64
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue // the header line, or not listening
		}
		ip, p, err := parseSockAddr(f[1])
		if err != nil {
			return nil, err
		}
		if p != port || !(ip.IsUnspecified() || slices.ContainsFunc(ips, ip.Equal)) {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, ino)
	}
	return out, sc.Err()
}

// parseSockAddr decodes "0100007F:1FFC": the address as the kernel prints
// it (each 32-bit word of the network-order bytes in host order, in hex),
// then the port in hex.
func parseSockAddr(s string) (net.IP, int, error) {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, fmt.Errorf("address %q: not hex:port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("address %q: %w", s, err)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	return ip, int(port), nil
}

// socketHolders returns the processes with a file descriptor on one of the
// socket inodes, in pid order. Processes it may not read are skipped.
func socketHolders(procRoot string, inodes map[uint64]bool) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process
		}
		if holdsSocket(filepath.Join(procRoot, e.Name(), "fd"), inodes) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// holdsSocket reports whether one of the links in a /proc/<pid>/fd folder
// is "socket:[inode]" for one of the inodes.
func holdsSocket(fdDir string, inodes map[uint64]bool) bool {
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue
		}
		n, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(n, "]"), 10, 64)
		if err == nil && inodes[ino] {
			return true
		}
	}
	return false
}
