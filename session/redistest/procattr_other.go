//go:build !linux

package redistest

import "syscall"

// procAttr: elsewhere a server outlives a test process killed from
// outside; the cleanups stop it otherwise.
func procAttr() *syscall.SysProcAttr { return nil }
