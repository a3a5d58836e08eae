package redistest

import (
	"fmt"
	"testing"
	"time"
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

func TestClusterStarts(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, Config{})
	t.Logf("cluster up in %s", time.Since(start))
	cc := c.Client(t)
	ctx := t.Context()
	for i := range 20 {
		if err := cc.Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[*Server]bool{}
	for i := range 20 {
		seen[c.NodeFor(t, fmt.Sprint("k", i))] = true
	}
	if len(seen) != 3 {
		t.Errorf("20 keys on %d nodes, want 3", len(seen))
	}
}

func TestSentinelStartsAndFailsOver(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t, Config{})
	t.Logf("sentinel group up in %s", time.Since(start))
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.WaitReplicated(t)
	start = time.Now()
	old := s.KillMaster(t)
	m := s.WaitFailover(t, old)
	t.Logf("failover in %s", time.Since(start))
	if m == old {
		t.Fatal("same master")
	}
	var v string
	var err error
	for range 50 {
		if v, err = c.Get(ctx, "k").Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v != "v" {
		t.Fatalf("after failover: %q %v", v, err)
	}
}
