package session_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/session/storetest"
	"github.com/authgate/authgate/upstream"
)

// The tests here run the store on each Redis deployment the gateway
// supports (one server, Sentinel, Cluster), through OpenStore as the
// gateway builds it, as an ACL user given only storeACL.

// storeACL is the least an ACL user needs for authgate with the default
// key prefix: the commands the store sends (those of its Lua scripts
// included) on its keys and its pub/sub channel. README's "Redis modes"
// shows it; a command added to the store without it fails these tests.
var storeACL = []any{"~authgate:*", "&authgate:*", "-@all",
	"+get", "+set", "+getdel", "+del", "+eval", "+evalsha", "+incr", "+pexpire", "+pttl",
	"+publish", "+subscribe", "+ping"}

// clusterACL is what a cluster client needs besides storeACL: the slot
// map and the command table it routes by (without it, go-redis asks
// again and again).
var clusterACL = []any{"+cluster|slots", "+command"}

// Passwords of the test deployments: the default user's (the admin's),
// the ACL user authgate's, and the sentinels'.
const (
	adminPassword    = "admin-CANARY-pw"
	aclPassword      = "acl-CANARY-pw"
	sentinelPassword = "sentinel-CANARY-pw"
)

// topology is a Redis deployment under test.
type topology struct {
	redis session.RedisConfig // without a key prefix
	// nodes are the data servers.
	nodes []*redistest.Server
}

// addACLUser creates the ACL user authgate with rules on every node.
// After a restart, which forgets the user, the log of the refusals until
// then is emptied: noACLDenials looks for commands refused to the user.
func addACLUser(t *testing.T, nodes []*redistest.Server, rules ...any) {
	t.Helper()
	for _, n := range nodes {
		c := n.Client(t)
		args := append([]any{"ACL", "SETUSER", "authgate", "reset", "on", ">" + aclPassword}, rules...)
		if err := c.Do(t.Context(), args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER on %s: %v", n.Addr, err)
		}
		if err := c.Do(t.Context(), "ACL", "LOG", "RESET").Err(); err != nil {
			t.Fatalf("ACL LOG RESET on %s: %v", n.Addr, err)
		}
	}
}

// noACLDenials fails the test if a node refused the ACL user anything:
// storeACL (or clusterACL) lacks a command the client sends, perhaps one
// whose failure it hides.
func noACLDenials(t *testing.T, nodes []*redistest.Server) {
	t.Helper()
	for _, n := range nodes {
		if !n.Running() {
			continue
		}
		entries, err := n.Client(t).Do(context.Background(), "ACL", "LOG").Slice()
		if err != nil {
			t.Fatalf("ACL LOG on %s: %v", n.Addr, err)
		}
		for _, e := range entries {
			t.Errorf("%s refused the ACL user: %v", n.Addr, e)
		}
	}
}

// open opens the store on tp as the gateway does, with a key prefix of
// the test's own (under the ACL's authgate:), closed when the test ends.
func (tp topology) open(t *testing.T) session.Store {
	t.Helper()
	r := tp.redis
	r.KeyPrefix = "authgate:" + t.Name() + ":"
	s, closeStore, err := session.OpenStore(session.Config{Store: "redis", Redis: r}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeStore() })
	return s
}

// channel is the invalidation channel of the stores open(t) opens.
func channel(t *testing.T) string { return "authgate:" + t.Name() + ":invalidate" }

// subscribers returns the nodes where someone subscribes to channel(t),
// and how many subscriptions each has.
func (tp topology) subscribers(t *testing.T) map[*redistest.Server]int64 {
	t.Helper()
	out := map[*redistest.Server]int64{}
	for _, n := range tp.nodes {
		if !n.Running() {
			continue
		}
		// PUBSUB NUMSUB reports the node's own subscribers, on a cluster too.
		m, err := n.Client(t).PubSubNumSub(t.Context(), channel(t)).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB on %s: %v", n.Addr, err)
		}
		if m[channel(t)] > 0 {
			out[n] = m[channel(t)]
		}
	}
	return out
}

// counted counts the Gets that reach a shared store, keeping its
// Broadcaster, as gateway B's store in the cache tests.
type counted struct {
	session.Store
	session.Broadcaster
	gets atomic.Int64
}

func (c *counted) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// replicas returns two Managers on tp, each with a store (and so a
// connection pool and a subscription) of its own, as two gateways have:
// a, and b whose store reads are counted. Cached sessions live a minute,
// so only invalidations end b's copies.
func (tp topology) replicas(t *testing.T) (a, b *session.Manager, bStore *counted) {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	cfg := session.Config{Cookie: session.CookieConfig{Secret: upstream.Secret(base64.StdEncoding.EncodeToString(raw))}}
	cfg.Cache.TTL = time.Minute
	mk := func(s session.Store) *session.Manager {
		m, err := session.NewManager(cfg, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	a = mk(tp.open(t))
	bs := tp.open(t)
	bStore = &counted{Store: bs, Broadcaster: bs.(session.Broadcaster)}
	b = mk(bStore)
	waitCache(t, a, true, 5*time.Second)
	waitCache(t, b, true, 5*time.Second)
	return a, b, bStore
}

// waitCache waits until m's cache is in use (subscribed) or not.
func waitCache(t *testing.T, m *session.Manager, inUse bool, d time.Duration) {
	t.Helper()
	if !within(d, func() bool { return m.CacheInUse() == inUse }) {
		t.Fatalf("cache in use: still %v after %s", !inUse, d)
	}
}

// within polls f until it holds or d has passed.
func within(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func newSession(user string) *session.Session {
	return &session.Session{Subject: user, Email: user + "@example.com", Token: upstream.Token{
		AccessToken: upstream.Secret("AT-" + user), RefreshToken: upstream.Secret("RT-" + user), TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}}
}

// testConformance runs the store conformance suite on tp.
func testConformance(t *testing.T, tp topology) {
	storetest.Run(t, func(t *testing.T) session.Store { return tp.open(t) })
}

// testCacheCoherent: with both gateways serving from their caches, a
// refresh on A reaches B, and a sign-out on A stops the session on B
// within 1 s (SECURITY.md 45).
func testCacheCoherent(t *testing.T, tp topology) {
	a, b, bStore := tp.replicas(t)
	ctx := t.Context()
	tk, err := a.Create(ctx, newSession("ada"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := b.Load(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	if n := bStore.gets.Load(); n != 1 {
		t.Fatalf("B's store reads for three loads: %d, want 1 (the others from its cache)", n)
	}
	fresh := upstream.Token{AccessToken: "AT-refreshed", RefreshToken: "RT-refreshed", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}
	if _, _, err := a.Refresh(ctx, tk, func(*session.Session) bool { return true },
		func(context.Context, upstream.Token) (upstream.Token, error) { return fresh, nil }); err != nil {
		t.Fatal(err)
	}
	if !within(time.Second, func() bool {
		s, _, err := b.Load(ctx, tk)
		return err == nil && s.Token.AccessToken == fresh.AccessToken
	}) {
		t.Error("B did not serve the token A refreshed within 1s")
	}
	if err := a.Delete(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if !within(time.Second, func() bool { _, _, err := b.Load(ctx, tk); return errors.Is(err, session.ErrNotFound) }) {
		t.Error("B still serves the session 1s after the sign-out on A")
	}
}

// testSubscriberKilled: while the subscriptions are killed over and over
// (CLIENT KILL TYPE pubsub on the node that holds them), B does not use
// its cache, so a sign-out on A in the gap is honoured; once resubscribed
// B caches again.
func testSubscriberKilled(t *testing.T, tp topology) {
	a, b, bStore := tp.replicas(t)
	ctx := t.Context()
	holders := tp.subscribers(t)
	if len(holders) != 1 {
		t.Fatalf("the two subscriptions are on %d nodes, want 1 (the channel's)", len(holders))
	}
	var holder *redistest.Server
	for n, subs := range holders {
		holder = n
		if subs != 2 {
			t.Fatalf("subscriptions on %s: %d, want 2 (A and B)", n.Addr, subs)
		}
	}
	killer := holder.Client(t)
	tk, err := a.Create(ctx, newSession("ada"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(ctx, tk); err != nil {
		t.Fatal(err)
	}
	stop, killed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			default:
				_ = killer.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err()
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	waitCache(t, b, false, 2*time.Second)
	err = a.Delete(ctx, tk)
	close(stop)
	<-killed
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(ctx, tk); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("B after a sign-out while its subscription was down: %v, want ErrNotFound", err)
	}
	waitCache(t, b, true, 5*time.Second)
	tk2, _ := a.Create(ctx, newSession("bob"))
	gets := bStore.gets.Load()
	b.Load(ctx, tk2)
	b.Load(ctx, tk2)
	if n := bStore.gets.Load() - gets; n != 1 {
		t.Errorf("B's store reads for two loads after resubscribing: %d, want 1", n)
	}
	if err := a.Delete(ctx, tk2); err != nil {
		t.Fatal(err)
	}
	if !within(time.Second, func() bool { _, _, err := b.Load(ctx, tk2); return errors.Is(err, session.ErrNotFound) }) {
		t.Error("B still serves a session 1s after the sign-out on A, resubscribed")
	}
}

// testSubscriberNodeDies: the node holding the subscriptions dies (kill).
// B stops using its cache at once (a session it holds is not served from
// it), resubscribes by itself when Redis is back (revive: a restart, or
// the failover to the replica, returning how long it took), and then
// honours a sign-out on A within 1 s. With survives, the session from
// before is still there.
func testSubscriberNodeDies(t *testing.T, tp topology, kill func(holder *redistest.Server), revive func(holder *redistest.Server) time.Duration, survives bool) {
	a, b, bStore := tp.replicas(t)
	ctx := t.Context()
	tk, err := a.Create(ctx, newSession("ada"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(ctx, tk); err != nil {
		t.Fatal(err)
	}
	var holder *redistest.Server
	for n := range tp.subscribers(t) {
		holder = n
	}
	if holder == nil {
		t.Fatal("no node holds the subscriptions")
	}
	kill(holder)
	start := time.Now()
	waitCache(t, b, false, time.Second)
	t.Logf("B stopped using its cache %s after the node died", time.Since(start).Round(time.Millisecond))
	// From the store, not the cache: it fails, or answers if the session
	// lives on another cluster node.
	gets := bStore.gets.Load()
	b.Load(ctx, tk)
	if n := bStore.gets.Load() - gets; n != 1 {
		t.Fatalf("B's store reads for a load while its subscription was down: %d, want 1 (no cache)", n)
	}
	took := revive(holder)
	waitCache(t, b, true, 10*time.Second)
	t.Logf("Redis back after %s; B caching again %s after the node died", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if survives {
		if s, _, err := b.Load(ctx, tk); err != nil || s.Subject != "ada" {
			t.Errorf("the session from before: %v, want it still there", err)
		}
	}
	tk2, err := a.Create(ctx, newSession("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Load(ctx, tk2); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, tk2); err != nil {
		t.Fatal(err)
	}
	if !within(time.Second, func() bool { _, _, err := b.Load(ctx, tk2); return errors.Is(err, session.ErrNotFound) }) {
		t.Error("B still serves a session 1s after the sign-out on A, after resubscribing")
	}
}

// TestRedisCluster runs the store, and two replicas' session caches, on a
// three-master Redis Cluster as an ACL user.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.Config{Password: adminPassword})
	addACLUser(t, cl.Nodes, append(storeACL, clusterACL...)...)
	t.Cleanup(func() { noACLDenials(t, cl.Nodes) })
	tp := topology{
		redis: session.RedisConfig{Cluster: &session.ClusterConfig{Addrs: cl.Addrs, Username: "authgate", Password: aclPassword}},
		nodes: cl.Nodes,
	}
	t.Run("Conformance", func(t *testing.T) { testConformance(t, tp) })
	t.Run("KeysSpread", func(t *testing.T) {
		// Sessions, their locks and login states hash on their own ids:
		// no hash tag gathers them on one node.
		s := tp.open(t)
		perNode := map[*redistest.Server]int{}
		for i := range 30 {
			key := fmt.Sprintf("s:%02d-session", i)
			if err := s.Set(t.Context(), key, []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			perNode[cl.NodeFor(t, "authgate:"+t.Name()+":"+key)]++
		}
		if len(perNode) != 3 {
			t.Errorf("30 sessions on %d nodes, want all 3", len(perNode))
		}
	})
	t.Run("CacheCoherent", func(t *testing.T) { testCacheCoherent(t, tp) })
	t.Run("SubscriberKilled", func(t *testing.T) { testSubscriberKilled(t, tp) })
	t.Run("SubscriberNodeDies", func(t *testing.T) {
		testSubscriberNodeDies(t, tp, (*redistest.Server).Stop, func(holder *redistest.Server) time.Duration {
			start := time.Now()
			holder.Restart() // same port, same nodes.conf: it rejoins with its slots
			addACLUser(t, []*redistest.Server{holder}, append(storeACL, clusterACL...)...)
			cl.WaitOK(t)
			return time.Since(start)
		}, false) // the node restarts empty
	})
}

// TestRedisSentinel runs the store, and two replicas' session caches, on
// a Sentinel group as an ACL user, the sentinels with a password of their
// own; last, the master dies and the replica takes over.
func TestRedisSentinel(t *testing.T) {
	sg := redistest.StartSentinel(t, redistest.Config{Password: adminPassword, SentinelPassword: sentinelPassword})
	addACLUser(t, sg.Nodes, storeACL...)
	t.Cleanup(func() { noACLDenials(t, sg.Nodes) })
	tp := topology{
		redis: session.RedisConfig{Sentinel: &session.SentinelConfig{MasterName: sg.MasterName, Addrs: sg.Addrs,
			Username: "authgate", Password: aclPassword, SentinelPassword: sentinelPassword}},
		nodes: sg.Nodes,
	}
	t.Run("Conformance", func(t *testing.T) { testConformance(t, tp) })
	t.Run("CacheCoherent", func(t *testing.T) { testCacheCoherent(t, tp) })
	t.Run("SubscriberKilled", func(t *testing.T) { testSubscriberKilled(t, tp) })
	t.Run("SubscriberNodeDies", func(t *testing.T) {
		kill := func(master *redistest.Server) {
			sg.WaitReplicated(t) // the session is on the replica too
			master.Stop()
		}
		testSubscriberNodeDies(t, tp, kill, func(master *redistest.Server) time.Duration {
			start := time.Now()
			if m := sg.WaitFailover(t, master); m == master {
				t.Fatal("the dead master is the master again")
			}
			return time.Since(start)
		}, true)
	})
}

// TestRedisURL: a single server as an ACL user named in the URL, over
// plain TCP and over TLS (rediss://, the server's certificate checked
// against tls.ca_file).
func TestRedisURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  redistest.Config
	}{
		{"redis", redistest.Config{Password: adminPassword}},
		{"rediss", redistest.Config{Password: adminPassword, TLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartWith(t, tc.cfg)
			addACLUser(t, []*redistest.Server{srv}, storeACL...)
			t.Cleanup(func() { noACLDenials(t, []*redistest.Server{srv}) })
			tp := topology{
				redis: session.RedisConfig{URL: tc.name + "://authgate:" + aclPassword + "@" + srv.Addr + "/0", TLS: session.RedisTLSConfig{CAFile: srv.CAFile}},
				nodes: []*redistest.Server{srv},
			}
			t.Run("Conformance", func(t *testing.T) { testConformance(t, tp) })
			t.Run("CacheCoherent", func(t *testing.T) { testCacheCoherent(t, tp) })
			t.Run("SubscriberKilled", func(t *testing.T) { testSubscriberKilled(t, tp) })
			t.Run("SubscriberNodeDies", func(t *testing.T) {
				testSubscriberNodeDies(t, tp, (*redistest.Server).Stop, func(srv *redistest.Server) time.Duration {
					start := time.Now()
					srv.Restart()
					addACLUser(t, tp.nodes, storeACL...)
					return time.Since(start)
				}, false) // it restarts empty
			})
		})
	}
}

// TestRedisRefusals: a wrong password, an ACL user without its rights, and
// a TLS server whose certificate no configured CA signed, fail closed
// (ErrUnavailable, not "no session"), and no error shows the password.
func TestRedisRefusals(t *testing.T) {
	plain := redistest.StartWith(t, redistest.Config{Password: adminPassword})
	addACLUser(t, []*redistest.Server{plain}, "~other:*", "+@all")
	tlsSrv := redistest.StartWith(t, redistest.Config{TLS: true})
	for _, tc := range []struct {
		name string
		r    session.RedisConfig
	}{
		{"wrong password", session.RedisConfig{URL: "redis://:wrong-CANARY-pw@" + plain.Addr + "/0"}},
		{"wrong ACL password", session.RedisConfig{URL: "redis://authgate:wrong-CANARY-pw@" + plain.Addr + "/0"}},
		{"ACL user without the keys", session.RedisConfig{URL: "redis://authgate:" + aclPassword + "@" + plain.Addr + "/0"}},
		{"TLS, CA not trusted", session.RedisConfig{URL: "rediss://" + tlsSrv.Addr + "/0"}},
		{"plain to a TLS port", session.RedisConfig{URL: "redis://" + tlsSrv.Addr + "/0", Timeout: 300 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := topology{redis: tc.r}.open(t)
			_, err := s.Get(t.Context(), "k")
			if !errors.Is(err, session.ErrUnavailable) || errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Get: got %v, want ErrUnavailable only", err)
			}
			if msg := err.Error(); strings.Contains(msg, "CANARY") {
				t.Errorf("error %q shows a password", msg)
			}
		})
	}
}

// TestRedisTLSTopologies: Sentinel and Cluster over TLS (tls.enabled,
// tls.ca_file): the sentinels, the nodes, replication and the cluster bus
// all on TLS ports only.
func TestRedisTLSTopologies(t *testing.T) {
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, redistest.Config{TLS: true})
		testCacheCoherent(t, topology{redis: session.RedisConfig{
			Cluster: &session.ClusterConfig{Addrs: cl.Addrs},
			TLS:     session.RedisTLSConfig{Enabled: true, CAFile: cl.Nodes[0].CAFile},
		}, nodes: cl.Nodes})
	})
	t.Run("sentinel", func(t *testing.T) {
		sg := redistest.StartSentinel(t, redistest.Config{TLS: true})
		testCacheCoherent(t, topology{redis: session.RedisConfig{
			Sentinel: &session.SentinelConfig{MasterName: sg.MasterName, Addrs: sg.Addrs},
			TLS:      session.RedisTLSConfig{Enabled: true, CAFile: sg.Nodes[0].CAFile},
		}, nodes: sg.Nodes})
	})
}

// TestRedisHungServerFailsFast: a server that accepts connections but
// answers nothing (paused, as in a partition) costs a call at most about
// two timeouts (two tries, one dial each), the same on every topology, and
// a caller's deadline cuts it shorter.
func TestRedisHungServerFailsFast(t *testing.T) {
	// go-redis's defaults would take four tries or more: at least 2 s.
	const timeout = 500 * time.Millisecond
	single := redistest.Start(t)
	cl := redistest.StartCluster(t, redistest.Config{})
	sg := redistest.StartSentinel(t, redistest.Config{})
	for _, tc := range []struct {
		name string
		r    session.RedisConfig
		hang func(t *testing.T, key string) *redistest.Server
	}{
		{"url", session.RedisConfig{URL: single.URL}, func(*testing.T, string) *redistest.Server { return single }},
		{"cluster", session.RedisConfig{Cluster: &session.ClusterConfig{Addrs: cl.Addrs}}, func(t *testing.T, key string) *redistest.Server { return cl.NodeFor(t, key) }},
		{"sentinel", session.RedisConfig{Sentinel: &session.SentinelConfig{MasterName: sg.MasterName, Addrs: sg.Addrs}}, func(t *testing.T, _ string) *redistest.Server { return sg.Master(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Timeout = timeout
			s := topology{redis: tc.r}.open(t)
			ctx := t.Context()
			if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil { // connections made
				t.Fatal(err)
			}
			n := tc.hang(t, "authgate:"+t.Name()+":k")
			n.Pause()
			defer n.Resume()
			start := time.Now()
			_, err := s.Get(ctx, "k")
			took := time.Since(start)
			if !errors.Is(err, session.ErrUnavailable) {
				t.Fatalf("Get from a hung server: %v, want ErrUnavailable", err)
			}
			if took > 2*timeout+400*time.Millisecond {
				t.Errorf("Get from a hung server took %s, want at most about 2 × %s", took, timeout)
			}
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			start = time.Now()
			_, err = s.Get(short, "k")
			if took := time.Since(start); err == nil || took > 500*time.Millisecond {
				t.Errorf("Get with a 100ms deadline: %v after %s, want an error within it", err, took)
			}
			t.Logf("hung server: an error after %s", took.Round(time.Millisecond))
		})
	}
}

// TestRedisClusterFailover: a cluster whose masters have a replica each
// loses the master of a session's slot, then the one holding the
// subscriptions; both times the replica takes over, and the store, then
// the caches, follow at once. (go-redis alone would keep sending to the
// dead master for up to a minute: it reads the slot map again only on
// MOVED, ASK or a timer.)
func TestRedisClusterFailover(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.Config{ClusterReplicas: 1})
	tp := topology{redis: session.RedisConfig{Cluster: &session.ClusterConfig{Addrs: cl.Addrs}, Timeout: 500 * time.Millisecond}, nodes: cl.Nodes}
	t.Run("StoreFollows", func(t *testing.T) {
		s := tp.open(t)
		ctx := t.Context()
		if err := s.Set(ctx, "k", []byte("before"), time.Minute); err != nil {
			t.Fatal(err)
		}
		cl.WaitReplicated(t)
		master := cl.NodeFor(t, "authgate:"+t.Name()+":k")
		master.Stop()
		start := time.Now()
		promoted := cl.WaitFailover(t, master)
		failover := time.Since(start)
		start = time.Now()
		var v []byte
		var err error
		if !within(2*time.Second, func() bool { v, err = s.Get(ctx, "k"); return err == nil }) {
			t.Fatalf("the store still fails 2s after the failover to %s: %v", promoted.Addr, err)
		}
		if string(v) != "before" {
			t.Errorf("after the failover: got %q, want %q", v, "before")
		}
		t.Logf("failover in %s; the store read from the promoted replica %s later", failover.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})
	t.Run("SubscriberNodeDies", func(t *testing.T) {
		kill := func(master *redistest.Server) {
			cl.WaitReplicated(t)
			master.Stop()
		}
		testSubscriberNodeDies(t, tp, kill, func(master *redistest.Server) time.Duration {
			start := time.Now()
			cl.WaitFailover(t, master)
			return time.Since(start)
		}, true)
	})
}
