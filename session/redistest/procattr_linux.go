package redistest

import "syscall"

// procAttr has a server killed with the test process, even one killed
// from outside or timed out (which skips the cleanups): no redis-server
// outlives its test.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
