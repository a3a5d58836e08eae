// Package redistest runs throw-away Redis servers for tests, like
// net/http/httptest runs an HTTP server: private processes on free loopback
// ports, no persistence, killed when the test ends. Start runs one server
// (StartWith adds a password or TLS), StartCluster a Redis Cluster of three
// masters, StartSentinel a master, a replica and three sentinels. Servers
// can be stopped, paused and restarted on the same port to test how code
// survives an outage or a failover.
package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// quiet discards go-redis's own log lines ("failed to dial" on every
// attempt): outages are what these tests cause on purpose, and the lines
// buried real failures in the output. Errors still reach the code under
// test as return values.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// startTimeout bounds how long Start and Restart wait for PING to answer.
const startTimeout = 5 * time.Second

// Config adjusts the servers StartWith, StartCluster and StartSentinel
// run. The zero value is what Start runs: no password, plain TCP.
type Config struct {
	// Password is required from every client: the default user's password
	// (requirepass). Replicas and sentinels are given it to reach the
	// master. Empty means none.
	Password string
	// SentinelPassword is the sentinels' own password (their
	// requirepass). Empty means none. StartSentinel only.
	SentinelPassword string
	// ClusterReplicas is the number of replicas of each of the three
	// masters StartCluster runs (redis-cli --cluster-replicas). Zero means
	// none.
	ClusterReplicas int
	// TLS makes every server listen with TLS only (no plain port), the
	// replication link and the cluster bus included, with a certificate for
	// 127.0.0.1 and localhost signed by a CA made for the test (the
	// servers' CAFile). Clients need no certificate.
	TLS bool
}

// Server is a running redis-server.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string
	// URL is the server's redis:// URL (database 0): rediss:// with TLS,
	// with the password as in redis://:password@host:port/0 when there
	// is one.
	URL string
	// CAFile is the PEM file of the CA that signed the server's
	// certificate; empty without TLS.
	CAFile string

	t    testing.TB
	cfg  Config
	port int
	dir  string
	// conf is a config file given before the options ("" none); args
	// follow the common options.
	conf string
	args []string
	// tls trusts the server's certificate; nil without TLS.
	tls  *tls.Config
	cert *certFiles
	// replicaOf is the master a cluster replica follows, as last seen.
	replicaOf string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs redis-server on a free loopback port with persistence off and
// waits until it answers PING. The server is killed when the test ends. A
// missing redis-server fails the test: the suite needs a real Redis.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Config{})
}

// StartWith is Start with a password or TLS as cfg says.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	var certs *certFiles
	if cfg.TLS {
		certs = newCertFiles(t)
	}
	return launch(t, cfg, certs, 0, nil, nil)
}

// launch starts one server on port, or on a free port if port is 0 or
// turns out taken. conf, when not nil, returns the text of a config file
// given to redis-server first; args the options that follow the common
// ones. Both are called for the port chosen, again if it changes.
func launch(t testing.TB, cfg Config, certs *certFiles, port int, conf func(s *Server) string, args func(s *Server) []string) *Server {
	t.Helper()
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: apt-get install redis-server")
	}
	s := &Server{t: t, cfg: cfg, dir: t.TempDir(), cert: certs}
	if certs != nil {
		s.tls, s.CAFile = certs.client(), certs.ca
	}
	t.Cleanup(s.Stop)
	// A free port can be taken by someone else between probing and binding;
	// try a few.
	var err error
	for try := range 3 {
		if try > 0 || port == 0 {
			if port, err = freePort(); err != nil {
				continue
			}
		}
		s.port, s.conf, s.args = port, "", nil
		if conf != nil {
			s.conf = s.writeConf(conf(s))
		}
		if args != nil {
			s.args = args(s)
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	s.URL = s.url()
	return s
}

func (s *Server) url() string {
	scheme := "redis"
	if s.tls != nil {
		scheme = "rediss"
	}
	auth := ""
	if s.cfg.Password != "" {
		auth = ":" + s.cfg.Password + "@"
	}
	return scheme + "://" + auth + s.Addr + "/0"
}

// Stop kills the server at once, as a crash would. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process dies only once it runs
	<-s.done
	s.cmd, s.done = nil, nil
}

// Pause freezes the server (SIGSTOP): connections stay open and nothing
// answers, as in a network partition or a long fork, and the data stays
// for Resume. A stopped server is not paused.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on with its data.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Restart starts the server again on the same port (empty: nothing was
// persisted; a cluster node keeps its identity and slots, which live in
// its nodes.conf) and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Client returns a client for the server with short timeouts, one retry and
// one dial attempt per try (so a stopped server fails fast), closed when the
// test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(s.options(s.Addr))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// options are Client's options for the server at addr, which shares s's
// password and TLS.
func (s *Server) options(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		Password:              s.cfg.Password,
		TLSConfig:             s.tls,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
		DialerRetries:         1,
	}
}

// start launches redis-server on s.port and waits for PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	if s.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.cert.cert, "--tls-key-file", s.cert.key, "--tls-ca-cert-file", s.cert.ca,
			"--tls-auth-clients", "no", "--tls-replication", "yes")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	args = append(args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	if s.cfg.Password != "" {
		args = append(args, "--requirepass", s.cfg.Password, "--masterauth", s.cfg.Password)
	}
	args = append(args, s.args...)
	out := new(bytes.Buffer)
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitPing(s.options(addr), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s: %w; output:\n%s", addr, err, out.String())
	}
	s.cmd, s.done = cmd, done
	return nil
}

// writeConf writes text to a config file in s's directory and returns its
// path.
func (s *Server) writeConf(text string) string {
	path := filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// waitPing polls the server opts names with PING until it answers, the
// process exits (done closed, for example because the port was taken) or
// startTimeout passes.
func waitPing(opts *redis.Options, done <-chan struct{}) error {
	o := *opts
	o.DialTimeout, o.MaxRetries, o.DialerRetries = 200*time.Millisecond, -1, 1
	c := redis.NewClient(&o)
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer after %s: %w", startTimeout, err)
		}
		select {
		case <-done:
			return errors.New("exited before answering PING")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
