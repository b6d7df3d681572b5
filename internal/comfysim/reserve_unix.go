//go:build unix

package comfysim

import (
	"net"
	"syscall"
)

// reservePort keeps addr's port while an instance is stopped: a socket bound
// without SO_REUSEADDR and never listening. Connections to the port are
// refused, as for a dead server, and no other listener (a parallel test's
// instance on port 0, say) can take it before Restart.
func reservePort(addr string) (release func()) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return func() {}
	}
	family, sa := syscall.AF_INET, syscall.Sockaddr(nil)
	if ip4 := tcp.IP.To4(); ip4 != nil {
		sa4 := &syscall.SockaddrInet4{Port: tcp.Port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		family = syscall.AF_INET6
		sa6 := &syscall.SockaddrInet6{Port: tcp.Port}
		copy(sa6.Addr[:], tcp.IP.To16())
		sa = sa6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err != nil {
		return func() {}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return func() {}
	}
	return func() { syscall.Close(fd) }
}
