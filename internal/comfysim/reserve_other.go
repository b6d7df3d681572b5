//go:build !unix

package comfysim

// reservePort is a no-op where raw sockets are not available: the port is
// free while the instance is stopped.
func reservePort(addr string) (release func()) { return func() {} }
