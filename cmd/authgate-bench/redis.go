package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the bench's private redis-server: a free loopback port,
// no persistence.
type redisServer struct {
	URL    string
	client *redis.Client
	proc   *child
}

// startRedis runs redis-server and waits until it answers PING. A port
// taken between probing and binding is retried.
func (b *bench) startRedis(ctx context.Context) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server not found (apt-get install redis-server), or leave the Redis modes out with -modes")
	}
	var err error
	for range 3 {
		var addr string
		if addr, err = freeAddr(); err != nil {
			continue
		}
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", b.dir)
		var proc *child
		if proc, err = b.startChild("redis-server", cmd, false); err != nil {
			return nil, err
		}
		r := &redisServer{URL: "redis://" + addr + "/0", proc: proc,
			client: redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 5 * time.Second})}
		if err = r.waitPing(ctx); err == nil {
			return r, nil
		}
		r.client.Close()
		proc.stop()
	}
	return nil, err
}

func (r *redisServer) waitPing(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := r.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if r.proc.exited() {
			return r.proc.failure(errors.New("exited at start-up"))
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return r.proc.failure(fmt.Errorf("no PING answer: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usedMemory returns INFO memory's used_memory, in bytes.
func (r *redisServer) usedMemory(ctx context.Context) (int64, error) {
	info, err := r.client.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("redis INFO memory: no used_memory")
}
