package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is the nodes' cluster-node-timeout: how long a node
// may be unreachable before the others count it as failing.
const clusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a running Redis Cluster of three masters that share the
// 16384 slots, each with Config.ClusterReplicas replicas.
type Cluster struct {
	// Addrs are the nodes' host:port on 127.0.0.1: the seed list of a
	// cluster client.
	Addrs []string
	// Nodes are the servers, in the order of Addrs: the three masters
	// first, as started (a failover changes roles).
	Nodes []*Server

	cfg Config
}

// StartCluster runs three redis-server processes in cluster mode (and
// their replicas), joins them with `redis-cli --cluster create` and waits
// until every node reports cluster_state:ok. Everything is killed when
// the test ends.
func StartCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli not found: apt-get install redis-tools")
	}
	var certs *certFiles
	if cfg.TLS {
		certs = newCertFiles(t)
	}
	c := &Cluster{cfg: cfg}
	for range 3 * (1 + cfg.ClusterReplicas) {
		n := launch(t, cfg, certs, 0, nil, func(s *Server) []string {
			bus, err := freePort()
			if err != nil {
				t.Fatal(err)
			}
			args := []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf", // in the node's --dir
				"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout / time.Millisecond)),
				// The bus on a port of its own rather than port+10000,
				// which may be taken or past 65535.
				"--cluster-port", strconv.Itoa(bus),
			}
			if cfg.TLS {
				args = append(args, "--tls-cluster", "yes")
			}
			if cfg.ClusterReplicas > 0 {
				// A replica's first sync starts at once (the default
				// waits 5 s for more replicas).
				args = append(args, "--repl-diskless-sync-delay", "0")
			}
			return args
		})
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.ClusterReplicas), "--cluster-yes")
	if _, err := c.cli(args...); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c.WaitOK(t)
	return c
}

// cli runs redis-cli with the cluster's password and TLS settings.
func (c *Cluster) cli(args ...string) (string, error) {
	if c.cfg.TLS {
		args = append([]string{"--tls", "--cacert", c.Nodes[0].CAFile}, args...)
	}
	cmd := exec.Command("redis-cli", args...)
	cmd.Env = os.Environ()
	if c.cfg.Password != "" {
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+c.cfg.Password) // not on the command line
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("redis-cli %s: %w; output:\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// WaitOK waits until every running node reports cluster_state:ok with all
// slots served and knows all the nodes, and every running replica is in
// sync with its master, at most 10 s.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	c.wait(t, "cluster not ok", func() string { return "" })
}

// WaitFailover waits until the slots the stopped master old served are
// served by another node (its promoted replica) and WaitOK's conditions
// hold, at most 10 s, and returns the new master.
func (c *Cluster) WaitFailover(t testing.TB, old *Server) *Server {
	t.Helper()
	var promoted *Server
	c.wait(t, "no failover from "+old.Addr, func() string {
		promoted = nil
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			slots, err := n.slots(context.Background())
			if err != nil {
				return err.Error()
			}
			for _, r := range slots {
				if r.Nodes[0].Addr == old.Addr {
					return fmt.Sprintf("%s: slots %d-%d still on %s", n.Addr, r.Start, r.End, old.Addr)
				}
			}
			if promoted == nil {
				for _, r := range slots {
					for _, m := range c.Nodes {
						if m.Addr == r.Nodes[0].Addr && m.replicaOf == old.Addr {
							promoted = m
						}
					}
				}
			}
		}
		if promoted == nil {
			return "no replica of " + old.Addr + " serves slots"
		}
		return ""
	})
	return promoted
}

// WaitReplicated waits until every replica has received everything its
// master had accepted when it was called (their replication offsets), at
// most 10 s: what was written before survives a failover.
func (c *Cluster) WaitReplicated(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	want := map[string]int64{}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.info(ctx, "INFO", "replication")
		if err != nil {
			t.Fatalf("redistest: INFO on %s: %v", n.Addr, err)
		}
		if strings.Contains(info, "role:master") {
			want[n.Addr] = infoInt(info, "master_repl_offset")
		}
	}
	c.wait(t, "replicas behind", func() string {
		for _, n := range c.Nodes {
			off, ok := want[n.replicaOf]
			if !n.Running() || !ok {
				continue
			}
			info, err := n.info(ctx, "INFO", "replication")
			if err != nil {
				return err.Error()
			}
			if got := infoInt(info, "slave_repl_offset"); got < off {
				return fmt.Sprintf("%s at offset %d of %d", n.Addr, got, off)
			}
		}
		return ""
	})
}

// wait polls the cluster until it is ok and more() returns "", at most
// 10 s; what failed last is in the failure message.
func (c *Cluster) wait(t testing.TB, what string, more func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		bad := c.notOK()
		if bad == "" {
			bad = more()
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s after 10s; %s", what, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notOK says what WaitOK still waits for, "" when nothing.
func (c *Cluster) notOK() string {
	ctx := context.Background()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		info, err := n.info(ctx, "CLUSTER", "INFO")
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v", n.Addr, err)
		case !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") ||
			!strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))):
			return n.Addr + ":\n" + info
		}
		repl, err := n.info(ctx, "INFO", "replication")
		if err != nil {
			return fmt.Sprintf("%s: %v", n.Addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return n.Addr + ": replica not in sync"
		}
		// Kept once promoted: WaitFailover looks for old's replica.
		if host, port := infoField(repl, "master_host"), infoField(repl, "master_port"); host != "" {
			n.replicaOf = net.JoinHostPort(host, port)
		}
	}
	return ""
}

// Client returns a cluster client with short timeouts, closed when the
// test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	o := c.Nodes[0].options("")
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs,
		Password:              o.Password,
		TLSConfig:             o.TLSConfig,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		DialerRetries:         1,
	})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// NodeFor returns the node that serves key's slot.
func (c *Cluster) NodeFor(t testing.TB, key string) *Server {
	t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		slot, err := n.do(ctx, "CLUSTER", "KEYSLOT", key).Int64()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = n.slots(ctx)
		}
		if err != nil {
			continue
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				for _, m := range c.Nodes {
					if m.Addr == r.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	t.Fatalf("redistest: no node serves the slot of %q", key)
	return nil
}

// slots returns CLUSTER SLOTS as s sees it.
func (s *Server) slots(ctx context.Context) ([]redis.ClusterSlot, error) {
	cl := redis.NewClient(s.options(s.Addr))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return cl.ClusterSlots(ctx).Result()
}

// Running reports whether the server's process is up (not stopped;
// perhaps paused).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// info runs a command answering text (INFO, CLUSTER INFO) on s alone.
func (s *Server) info(ctx context.Context, args ...any) (string, error) {
	return s.do(ctx, args...).Text()
}

// do runs one command on s alone, within a second.
func (s *Server) do(ctx context.Context, args ...any) *redis.Cmd {
	cl := redis.NewClient(s.options(s.Addr))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return cl.Do(ctx, args...)
}
