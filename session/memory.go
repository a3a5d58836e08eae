package session

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// defaultMaxEntries bounds a MemoryStore created with maxEntries 0.
const defaultMaxEntries = 1_000_000

// MemoryStore is a Store held in the process's memory: the embedded default
// for a single replica. Entries expire against the injected clock; expired
// entries are swept lazily by the operations themselves (each entry leaves an
// expiry heap once, so the cost is amortised and no goroutine runs). It is
// safe for concurrent use. Its zero value is not usable; call NewMemoryStore.
type MemoryStore struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	entries map[string]*memEntry
	byTime  expiryHeap
}

// memEntry is one stored value and its place in the expiry heap.
type memEntry struct {
	key     string
	value   []byte
	expires time.Time
	index   int
}

// NewMemoryStore returns an empty MemoryStore. now is the clock that expiry is
// measured against (nil means time.Now). maxEntries bounds the number of live
// entries (0 means one million); when the store is full, setting a new key
// fails with an error wrapping ErrUnavailable.
func NewMemoryStore(now func() time.Time, maxEntries int) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	if maxEntries <= 0 {
		maxEntries = defaultMaxEntries
	}
	return &MemoryStore{now: now, max: maxEntries, entries: make(map[string]*memEntry)}
}

// Len returns the number of entries that have not expired yet.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(m.now())
	return len(m.entries)
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key)
	if e == nil {
		return nil, ErrNotFound
	}
	return bytes.Clone(e.value), nil
}

// Set implements Store.
func (m *MemoryStore) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errTTL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put(key, value, ttl)
}

// CompareAndSwap implements Store.
func (m *MemoryStore) CompareAndSwap(_ context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errTTL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key)
	if e == nil || !bytes.Equal(e.value, old) {
		return false, nil
	}
	return true, m.put(key, new, ttl)
}

// Take implements Store.
func (m *MemoryStore) Take(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key)
	if e == nil {
		return nil, ErrNotFound
	}
	m.remove(e)
	return e.value, nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.live(key); e != nil {
		m.remove(e)
	}
	return nil
}

// Lock implements Store. The lock is an ordinary entry holding a random token,
// as in RedisStore.
func (m *MemoryStore) Lock(_ context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	if ttl <= 0 {
		return nil, errTTL
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token) // crypto/rand.Read never fails (Go 1.24+)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live(key) != nil {
		return nil, ErrLocked
	}
	if err := m.put(key, token, ttl); err != nil {
		return nil, err
	}
	return func(context.Context) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if e := m.live(key); e != nil && bytes.Equal(e.value, token) {
			m.remove(e)
		}
		return nil
	}, nil
}

// Incr implements Store.
func (m *MemoryStore) Incr(_ context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	if window <= 0 {
		return 0, 0, errTTL
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if e := m.live(key); e != nil {
		n, _ := strconv.ParseInt(string(e.value), 10, 64)
		n++
		e.value = strconv.AppendInt(e.value[:0], n, 10)
		return n, e.expires.Sub(now), nil
	}
	if err := m.put(key, []byte("1"), window); err != nil {
		return 0, 0, err
	}
	return 1, window, nil
}

// Count implements Store.
func (m *MemoryStore) Count(_ context.Context, key string) (int64, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key)
	if e == nil {
		return 0, 0, nil
	}
	n, _ := strconv.ParseInt(string(e.value), 10, 64)
	return n, e.expires.Sub(m.now()), nil
}

// Ping implements Store; memory always answers.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// live sweeps expired entries and returns key's entry, or nil. Callers hold mu.
func (m *MemoryStore) live(key string) *memEntry {
	m.sweep(m.now())
	return m.entries[key]
}

// put stores a copy of value under key. Callers hold mu and have swept.
func (m *MemoryStore) put(key string, value []byte, ttl time.Duration) error {
	now := m.now()
	m.sweep(now)
	if e, ok := m.entries[key]; ok {
		e.value = bytes.Clone(value)
		e.expires = now.Add(ttl)
		heap.Fix(&m.byTime, e.index)
		return nil
	}
	if len(m.entries) >= m.max {
		return fmt.Errorf("%w: memory store full (%d entries)", ErrUnavailable, m.max)
	}
	e := &memEntry{key: key, value: bytes.Clone(value), expires: now.Add(ttl)}
	m.entries[key] = e
	heap.Push(&m.byTime, e)
	return nil
}

// remove deletes e. Callers hold mu.
func (m *MemoryStore) remove(e *memEntry) {
	heap.Remove(&m.byTime, e.index)
	delete(m.entries, e.key)
}

// sweep drops every entry whose expiry is not after now. Callers hold mu.
func (m *MemoryStore) sweep(now time.Time) {
	for len(m.byTime) > 0 && !m.byTime[0].expires.After(now) {
		e := heap.Pop(&m.byTime).(*memEntry)
		delete(m.entries, e.key)
	}
}

// expiryHeap orders entries by expiry, soonest first (container/heap).
type expiryHeap []*memEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *expiryHeap) Push(x any) {
	e := x.(*memEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
