package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel timing: a master unreachable for DownAfter is down, and the
// sentinels promote the replica a few seconds later.
const (
	// DownAfter is the sentinels' down-after-milliseconds.
	DownAfter = 1000 * time.Millisecond
	// failoverTimeout is the sentinels' failover-timeout: how long a
	// failover may take before another is tried.
	failoverTimeout = 3000 * time.Millisecond
)

// MasterName is the name the sentinels of StartSentinel monitor their
// master under.
const MasterName = "authgate-test"

// Sentinel is a running Sentinel group: a master, one replica and three
// sentinels watching them with a quorum of two.
type Sentinel struct {
	// MasterName is the name the sentinels know the master by.
	MasterName string
	// Addrs are the sentinels' host:port on 127.0.0.1.
	Addrs []string
	// Nodes are the data servers: Nodes[0] starts as the master, Nodes[1]
	// as its replica; a failover swaps their roles.
	Nodes []*Server
	// Sentinels are the sentinel processes, in the order of Addrs.
	Sentinels []*Server

	cfg Config
}

// StartSentinel runs a master, its replica and three sentinels (redis-server
// --sentinel), and waits until the replica is in sync and every sentinel
// knows the master, the replica and the two other sentinels, so that a
// failover can start at once. Everything is killed when the test ends.
func StartSentinel(t testing.TB, cfg Config) *Sentinel {
	t.Helper()
	var certs *certFiles
	if cfg.TLS {
		certs = newCertFiles(t)
	}
	s := &Sentinel{MasterName: MasterName, cfg: cfg}
	// Either node may become the master: neither waits for more replicas
	// before a full sync (the default delays it 5 s).
	noDelay := func(*Server) []string { return []string{"--repl-diskless-sync-delay", "0"} }
	master := launch(t, cfg, certs, 0, nil, noDelay)
	replica := launch(t, cfg, certs, 0, nil, func(s *Server) []string {
		return append(noDelay(s), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	})
	s.Nodes = []*Server{master, replica}
	scfg := cfg
	scfg.Password = cfg.SentinelPassword // the sentinels' own requirepass
	// Each sentinel is told the others (their ids and ports) and the
	// replica up front: found through hello messages, every 2 s, they
	// would take seconds to know each other. (Should a port be taken, the
	// sentinel on another one is found that slower way.)
	ids := make([]string, 3)
	ports := make([]int, 3)
	for i := range ids {
		ids[i] = randomHex(20)
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	for i := range 3 {
		conf := func(self *Server) string {
			ports[i] = self.port
			c := fmt.Sprintf("sentinel myid %s\n", ids[i]) +
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n", MasterName, master.port) +
				fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", MasterName, DownAfter.Milliseconds()) +
				fmt.Sprintf("sentinel failover-timeout %s %d\n", MasterName, failoverTimeout.Milliseconds()) +
				fmt.Sprintf("sentinel parallel-syncs %s 1\n", MasterName) +
				fmt.Sprintf("sentinel known-replica %s 127.0.0.1 %d\n", MasterName, replica.port)
			for j := range ports {
				if j != i {
					c += fmt.Sprintf("sentinel known-sentinel %s 127.0.0.1 %d %s\n", MasterName, ports[j], ids[j])
				}
			}
			if cfg.Password != "" {
				c += fmt.Sprintf("sentinel auth-pass %s %s\n", MasterName, cfg.Password)
			}
			return c
		}
		sn := launch(t, scfg, certs, ports[i], conf, func(*Server) []string { return []string{"--sentinel"} })
		s.Sentinels = append(s.Sentinels, sn)
		s.Addrs = append(s.Addrs, sn.Addr)
	}
	s.waitReady(t, master.Addr)
	return s
}

// waitReady waits until every sentinel names master as the master and
// counts one replica and two other sentinels, and the replica is online,
// at most 15 s (the sentinels find each other through hello messages sent
// every 2 s).
func (s *Sentinel) waitReady(t testing.TB, master string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		bad := ""
		for _, sn := range s.Sentinels {
			m, err := sn.sentinelMaster(ctx, s.MasterName)
			switch {
			case err != nil:
				bad = fmt.Sprintf("sentinel %s: %v", sn.Addr, err)
			case net.JoinHostPort(m["ip"], m["port"]) != master || m["flags"] != "master" ||
				m["num-slaves"] != "1" || m["num-other-sentinels"] != "2":
				bad = fmt.Sprintf("sentinel %s: %v", sn.Addr, m)
			}
		}
		if bad == "" {
			info, err := s.node(master).info(ctx, "INFO", "replication")
			if err != nil || !strings.Contains(info, "state=online") {
				bad = fmt.Sprintf("master %s: %q %v", master, info, err)
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel group not ready after 15s: %s", bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sentinelMaster returns SENTINEL MASTER name as a map.
func (s *Server) sentinelMaster(ctx context.Context, name string) (map[string]string, error) {
	cl := redis.NewSentinelClient(s.options(s.Addr)) // a sentinel's cfg.Password is the sentinels' own
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return cl.Master(ctx, name).Result()
}

// node returns the data server at addr.
func (s *Sentinel) node(addr string) *Server {
	for _, n := range s.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// MasterAddr returns the master's host:port as the first sentinel that
// answers names it.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		if m, err := sn.sentinelMaster(context.Background(), s.MasterName); err == nil {
			return net.JoinHostPort(m["ip"], m["port"])
		}
	}
	t.Fatal("redistest: no sentinel answers")
	return ""
}

// Master returns the data server that is the master now.
func (s *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	return s.node(s.MasterAddr(t))
}

// WaitReplicated waits until the replica has received everything the
// master had accepted when it was called (their replication offsets), at
// most 5 s: what was written before survives a failover.
func (s *Sentinel) WaitReplicated(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	master := s.Master(t)
	info, err := master.info(ctx, "INFO", "replication")
	if err != nil {
		t.Fatalf("redistest: master INFO: %v", err)
	}
	want := infoInt(info, "master_repl_offset")
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, n := range s.Nodes {
			if n == master || !n.Running() {
				continue
			}
			if info, err := n.info(ctx, "INFO", "replication"); err == nil &&
				strings.Contains(info, "master_link_status:up") && infoInt(info, "slave_repl_offset") >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the replica did not reach offset %d within 5s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KillMaster kills the master's process, as a crash would, and returns
// it.
func (s *Sentinel) KillMaster(t testing.TB) *Server {
	t.Helper()
	m := s.Master(t)
	m.Stop()
	return m
}

// WaitFailover waits until every running sentinel names a master other
// than old and that server answers as a master (ROLE), at most 30 s, and
// returns it.
func (s *Sentinel) WaitFailover(t testing.TB, old *Server) *Server {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, agreed := "", true
		for _, sn := range s.Sentinels {
			if !sn.Running() {
				continue
			}
			m, err := sn.sentinelMaster(ctx, s.MasterName)
			a := ""
			if err == nil {
				a = net.JoinHostPort(m["ip"], m["port"])
			}
			if err != nil || a == old.Addr || (addr != "" && a != addr) {
				agreed = false
				break
			}
			addr = a
		}
		if n := s.node(addr); agreed && n != nil {
			if role, err := n.info(ctx, "INFO", "replication"); err == nil && strings.Contains(role, "role:master") {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: no failover from %s within 30s", old.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Client returns a Sentinel-backed client of the master with short
// timeouts, closed when the test ends.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	o := s.Nodes[0].options("")
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            s.MasterName,
		SentinelAddrs:         s.Addrs,
		Password:              o.Password,
		SentinelPassword:      s.cfg.SentinelPassword,
		TLSConfig:             o.TLSConfig,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialerRetries:         1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// infoInt returns the integer field name of an INFO answer, or -1.
func infoInt(info, name string) int64 {
	n, err := strconv.ParseInt(infoField(info, name), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// infoField returns the field name of an INFO answer, or "".
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
