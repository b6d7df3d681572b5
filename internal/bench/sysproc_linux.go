package bench

import "syscall"

// childSysProcAttr makes the kernel stop the gateway if the bench dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
