package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child has to exit after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// child is a process the bench started: a gateway, the bare proxy,
// redis-server or a peer.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed when the process has exited
	// group: the process leads a process group of its own (a peer's shell
	// and what it starts), and stop signals the whole group.
	group bool
}

// startChild starts cmd, its output kept in a tail buffer. The kernel
// kills it if the bench dies without stopping it (Pdeathsig). The child is
// registered with b, which stops it in close.
func (b *bench) startChild(name string, cmd *exec.Cmd, group bool) (*child, error) {
	c := &child{name: name, cmd: cmd, out: &tail{max: 32 << 10}, done: make(chan struct{}), group: group}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: group}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	b.children = append(b.children, c)
	return c, nil
}

// pid is the process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL after stopGrace.
func (c *child) stop() {
	if c.exited() {
		return
	}
	c.signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		c.signal(syscall.SIGKILL)
		<-c.done
	}
}

func (c *child) signal(sig syscall.Signal) {
	if c.group {
		_ = syscall.Kill(-c.pid(), sig)
		return
	}
	_ = c.cmd.Process.Signal(sig)
}

// failure wraps err with the end of the child's output, which is where a
// gateway says why it refused to start.
// A nil child (a peer the bench did not start) adds nothing.
func (c *child) failure(err error) error {
	if c == nil {
		return err
	}
	out := strings.TrimSpace(c.out.String())
	if out == "" {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return fmt.Errorf("%s: %w; its last output:\n%s", c.name, err, indent(lastLines(out, 20)))
}

// waitHTTP polls u until ready accepts the answer's status, the child
// exits or timeout passes. It returns how long that took from since.
func waitHTTP(ctx context.Context, c *child, u string, ready func(status int) bool, since time.Time, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := since.Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if ready(resp.StatusCode) {
				return time.Since(since), nil
			}
		}
		if c != nil && c.exited() {
			return 0, c.failure(errors.New("exited at start-up"))
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, c.failure(fmt.Errorf("not ready after %s", timeout))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freeAddr returns a loopback address nobody listened on a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture (the kernel converts to it).
const clockTicks = 100

// cpuTime returns the CPU time (user + system) process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after the last ")" start with field 3, the state.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memory is a process's resident memory, in bytes.
type memory struct {
	rss  int64 // VmRSS: all of it
	anon int64 // RssAnon: the heap, stacks and the runtime's own
	file int64 // RssFile: the binary's (and libraries') pages read in, shared and reclaimable
}

// rss reads the resident memory of process pid from /proc/PID/status.
func rss(pid int) (memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	var m memory
	fields := map[string]*int64{"VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	for line := range strings.SplitSeq(string(b), "\n") {
		for name, p := range fields {
			if v, ok := strings.CutPrefix(line, name); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return memory{}, errors.New("malformed " + name)
				}
				*p = kb << 10
			}
		}
	}
	if m.rss == 0 {
		return memory{}, errors.New("no VmRSS")
	}
	return m, nil
}

// tail keeps the last max bytes written to it: a child's output, for the
// error message when it fails, without growing with its access log.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
