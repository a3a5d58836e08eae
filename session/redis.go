package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// casScript replaces KEYS[1] with ARGV[2] (expiring after ARGV[3] ms) only if
// it currently holds ARGV[1]. A missing key reads as false, never equal.
var casScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
return 0
`)

// unlockScript deletes KEYS[1] only if it still holds our token ARGV[1], so a
// lock that expired and was taken by another owner survives our unlock.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// RedisStore is a Store in Redis (single node, Sentinel or Cluster through
// redis.UniversalClient), shared by every replica of the gateway. Every
// command and script touches one key, so it works on Cluster unchanged:
// no hash tags (see seal.go). Its invalidations use plain PUBLISH and
// SUBSCRIBE, which a cluster relays to every node, so subscribers may sit
// on any node (go-redis picks the master of the channel's slot).
type RedisStore struct {
	c       redis.UniversalClient
	cluster *redis.ClusterClient // c, when it is one
	prefix  string
}

// NewRedisStore returns a Store that keeps its records in c, each key
// prefixed with keyPrefix (for example "authgate:"). The caller owns c and
// closes it.
func NewRedisStore(c redis.UniversalClient, keyPrefix string) *RedisStore {
	cluster, _ := c.(*redis.ClusterClient)
	return &RedisStore{c: c, cluster: cluster, prefix: keyPrefix}
}

// Get implements Store.
func (r *RedisStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.c.Get(ctx, r.prefix+key).Bytes()
	if err != nil {
		return nil, r.err(err)
	}
	return b, nil
}

// Set implements Store.
func (r *RedisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errTTL
	}
	return r.err(r.c.Set(ctx, r.prefix+key, value, ttl).Err())
}

// CompareAndSwap implements Store with a Lua script (EVALSHA, falling back to
// EVAL when the server has not cached it).
func (r *RedisStore) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errTTL
	}
	n, err := casScript.Run(ctx, r.c, []string{r.prefix + key}, old, new, millis(ttl)).Int()
	if err != nil {
		return false, r.err(err)
	}
	return n == 1, nil
}

// Take implements Store with GETDEL (Redis 6.2 or later).
func (r *RedisStore) Take(ctx context.Context, key string) ([]byte, error) {
	b, err := r.c.GetDel(ctx, r.prefix+key).Bytes()
	if err != nil {
		return nil, r.err(err)
	}
	return b, nil
}

// Delete implements Store.
func (r *RedisStore) Delete(ctx context.Context, key string) error {
	return r.err(r.c.Del(ctx, r.prefix+key).Err())
}

// Lock implements Store with SET NX PX and a random token; unlock is a Lua
// compare-and-delete.
func (r *RedisStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	if ttl <= 0 {
		return nil, errTTL
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	k := r.prefix + key
	ok, err := r.c.SetNX(ctx, k, token, ttl).Result()
	if err != nil {
		return nil, r.err(err)
	}
	if !ok {
		return nil, ErrLocked
	}
	return func(ctx context.Context) error {
		return r.err(unlockScript.Run(ctx, r.c, []string{k}, token).Err())
	}, nil
}

// incrScript increments KEYS[1], giving a new counter the lifetime ARGV[1]
// ms, and returns the count and the remaining lifetime in ms.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
`)

// countScript returns KEYS[1]'s count and remaining lifetime in ms.
var countScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {0, 0} end
return {tonumber(v) or 0, redis.call('PTTL', KEYS[1])}
`)

// Incr implements Store.
func (r *RedisStore) Incr(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	if window <= 0 {
		return 0, 0, errTTL
	}
	return r.counterResult(incrScript.Run(ctx, r.c, []string{r.prefix + key}, millis(window)).Int64Slice())
}

// Count implements Store.
func (r *RedisStore) Count(ctx context.Context, key string) (int64, time.Duration, error) {
	return r.counterResult(countScript.Run(ctx, r.c, []string{r.prefix + key}).Int64Slice())
}

func (r *RedisStore) counterResult(v []int64, err error) (int64, time.Duration, error) {
	if err != nil {
		return 0, 0, r.err(err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("%w: unexpected counter reply", ErrUnavailable)
	}
	return v[0], time.Duration(max(v[1], 0)) * time.Millisecond, nil
}

// Ping implements Store. A cluster answers when every master does: a
// PING alone goes to one node of go-redis's choosing, round robin, so
// /readyz would flap with a master down.
func (r *RedisStore) Ping(ctx context.Context) error {
	if r.cluster != nil {
		return r.err(r.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		}))
	}
	return r.err(r.c.Ping(ctx).Err())
}

// err maps redis.Nil to ErrNotFound and wraps every other failure in
// ErrUnavailable. The cause stays reachable with errors.Is (for example
// context.Canceled); go-redis messages carry no keys or values.
//
// On a cluster, a failure also has the slot map read again (in the
// background, at most every 200 ms): go-redis does so by itself only on a
// MOVED or ASK answer or once a minute, and a dead master sends neither,
// so after a failover requests would keep going to the dead node for up
// to a minute instead of to the promoted replica.
func (r *RedisStore) err(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return ErrNotFound
	default:
		if !errors.Is(err, context.Canceled) {
			r.reloadSlots()
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// reloadSlots has a cluster client read the slot map again (see err).
func (r *RedisStore) reloadSlots() {
	if r.cluster != nil {
		r.cluster.ReloadState(context.Background())
	}
}

// millis converts ttl to whole milliseconds for PX, rounding up so that a
// positive ttl never becomes 0 (which Redis rejects).
func millis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// invalidationChannel is the pub/sub channel (after the key prefix) that
// carries session cache invalidations between replicas.
const invalidationChannel = "invalidate"

// PublishInvalidation implements Broadcaster.
func (r *RedisStore) PublishInvalidation(ctx context.Context, key string) error {
	return r.err(r.c.Publish(ctx, r.prefix+invalidationChannel, key).Err())
}

// subscriptionCheck is how long a quiet subscription waits before it pings
// its connection, and how long a ping may go unanswered.
const subscriptionCheck = 300 * time.Millisecond

// Invalidations implements Broadcaster: it subscribes, reports the
// subscription up once Redis confirms it, and down as soon as a read fails
// or a ping goes unanswered; go-redis reconnects and re-subscribes on the
// next read, and the confirmation brings it up again.
func (r *RedisStore) Invalidations(ctx context.Context, onKey func(string), onState func(bool)) {
	channel := r.prefix + invalidationChannel
	up := false
	state := func(v bool) {
		// Up is reported at every confirmation (each empties the cache);
		// down once per loss.
		if v || up {
			onState(v)
		}
		up = v
	}
	for ctx.Err() == nil {
		ps := r.c.Subscribe(ctx, channel)
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // a receive does not watch ctx
		r.receive(ctx, ps, onKey, state)
		stop()
		_ = ps.Close()
		state(false)
		r.reloadSlots() // the channel's node may have failed over
		_ = sleep(ctx, jitter(100*time.Millisecond))
	}
}

// receive reads one subscription until it fails. Every confirmation of
// the subscription reports it up, which empties the cache: go-redis may
// have reconnected and re-subscribed without an error reaching us, and
// lost messages on the way.
func (r *RedisStore) receive(ctx context.Context, ps *redis.PubSub, onKey func(string), onState func(bool)) {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, subscriptionCheck)
		if err != nil {
			var ne interface{ Timeout() bool }
			if ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() || pinged {
				return // broken, closed, or a ping went unanswered
			}
			// Quiet: make sure the connection is still there.
			if err := ps.Ping(ctx); err != nil {
				return
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				onState(true)
			}
		case *redis.Message:
			// Only what Manager publishes: a session's storage key.
			if strings.HasPrefix(m.Payload, sessionPrefix) && len(m.Payload) < 128 {
				onKey(m.Payload)
			}
		case *redis.Pong:
		}
	}
}
