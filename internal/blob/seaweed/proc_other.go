//go:build !linux

package seaweed

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
