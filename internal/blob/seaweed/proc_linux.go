package s3test

import "syscall"

// procAttr kills the server with the test process, even when the test
// binary is killed before its cleanups run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
