package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestBufferedLog: lines arrive whole, in order, within the flush
// interval, in few writes; Close writes the rest.
func TestBufferedLog(t *testing.T) {
	out := &lockedBuffer{}
	b := newBufferedLog(out)
	for i := range 1000 {
		b.Write([]byte("line " + strings.Repeat("x", i%50) + "\n"))
	}
	time.Sleep(3 * logFlushInterval)
	if got := strings.Count(out.String(), "\n"); got != 1000 {
		t.Errorf("lines after the flush interval: %d, want 1000", got)
	}
	if out.writes > 10 {
		t.Errorf("writes for 1000 lines: %d, want a few", out.writes)
	}
	b.Write([]byte("last\n"))
	big := strings.Repeat("y", logBufferMax+1) + "\n"
	b.Write([]byte(big))
	b.Close()
	if s := out.String(); !strings.HasSuffix(s, "last\n"+big) {
		t.Errorf("after Close: the last lines are missing or out of order")
	}
}
