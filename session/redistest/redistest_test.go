package redistest

import (
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Stop()
	s.Stop() // idempotent
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop: got nil, want an error")
	}
	s.Restart()
	var err error
	for range 50 { // the client drops its dead connections first
		if err = c.Ping(ctx).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatalf("key after Restart: got %d, want 0 (no persistence)", n)
	}
	if want := "redis://" + s.Addr + "/0"; s.URL != want {
		t.Fatalf("URL: got %q, want %q", s.URL, want)
	}
}
