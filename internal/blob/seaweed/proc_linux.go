package seaweed

import "syscall"

// procAttr kills the server with the process that started it, even when
// that process is killed before it can stop the server.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
