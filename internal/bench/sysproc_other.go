//go:build !linux

package bench

import "syscall"

// childSysProcAttr is nil where there is no parent-death signal.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
