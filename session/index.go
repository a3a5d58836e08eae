package session

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sessions are indexed by their user and by their login session at the
// authorization server, so that a logout that names a user or a server's
// session rather than a cookie (back-channel and front-channel logout, an
// operator's revocation) finds them.
//
// An index record lists the tickets of the sessions under one (kind,
// issuer, value). It is sealed under a key derived from the cookie secret,
// since a ticket opens its session, and stored under a keyed hash, so the
// store learns neither the user nor the tickets. A record holds at most
// maxIndexEntries live tickets (past that, a login ends the oldest
// session), lives as long as the longest-lived session it lists, and is
// changed under a lock of its own.
const (
	indexPrefix     = "x:"
	endedPrefix     = "xe:" // a server login session a logout ended
	indexVersion    = byte(1)
	maxIndexEntries = 64
	indexLockTTL    = 10 * time.Second
	indexMACLabel   = "authgate session index key v1"
	indexSealLabel  = "authgate session index seal v1"
	// Kinds of index: by subject, by the server's session id.
	indexBySubject = "sub"
	indexBySID     = "sid"
)

// sessionIndex holds the keys of the index records: one pair per cookie
// secret, the current first (records are written under it, and read under
// every one, so a rotation loses no entry).
type sessionIndex struct {
	macs, seals [][]byte
}

type indexEntry struct {
	ticket  Ticket
	expires time.Time
}

func newSessionIndex(secrets [][]byte) (*sessionIndex, error) {
	x := &sessionIndex{}
	for _, s := range secrets {
		mac, err := hkdf.Key(sha256.New, s, nil, indexMACLabel, 32)
		if err != nil {
			return nil, err
		}
		seal, err := hkdf.Key(sha256.New, s, nil, indexSealLabel, 32)
		if err != nil {
			return nil, err
		}
		x.macs, x.seals = append(x.macs, mac), append(x.seals, seal)
	}
	return x, nil
}

// keys are the storage keys of (kind, issuer, value) under each secret,
// the current first.
func (x *sessionIndex) keys(kind, issuer, value string) []string {
	keys := make([]string, len(x.macs))
	for i, k := range x.macs {
		h := hmac.New(sha256.New, k)
		h.Write([]byte(kind + "\x00" + issuer + "\x00" + value))
		keys[i] = indexPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
	}
	return keys
}

// encode seals entries under the current secret, bound to key.
func (x *sessionIndex) encode(key string, entries []indexEntry) ([]byte, error) {
	b := make([]byte, 0, 1+len(entries)*(ticketLen+binary.MaxVarintLen64))
	b = append(b, indexVersion)
	for _, e := range entries {
		b = append(b, e.ticket.marshal()...)
		b = binary.AppendVarint(b, e.expires.Unix())
	}
	return seal(x.seals[0], key, b)
}

// decode opens a record written by encode under any secret.
func (x *sessionIndex) decode(key string, record []byte) ([]indexEntry, error) {
	var b []byte
	err := errOpen
	for _, k := range x.seals {
		if b, err = open(k, key, record); err == nil {
			break
		}
	}
	if err != nil || len(b) == 0 || b[0] != indexVersion {
		return nil, errOpen
	}
	b = b[1:]
	var out []indexEntry
	for len(b) > 0 {
		if len(b) < ticketLen {
			return nil, errOpen
		}
		t, ok := unmarshalTicket(b[:ticketLen])
		if !ok {
			return nil, errOpen
		}
		exp, n := binary.Varint(b[ticketLen:])
		if n <= 0 {
			return nil, errOpen
		}
		out = append(out, indexEntry{ticket: t, expires: time.Unix(exp, 0)})
		b = b[ticketLen+n:]
	}
	return out, nil
}

// index adds t's session s to the records of its subject and its server's
// session id. A session without an issuer is not indexed: nothing could
// name it.
func (m *Manager) index(ctx context.Context, t Ticket, s *Session) error {
	if s.Issuer == "" {
		return nil
	}
	e := indexEntry{ticket: t, expires: s.CreatedAt.Add(m.cfg.MaxLifetime)}
	if err := m.indexAdd(ctx, m.idx.keys(indexBySubject, s.Issuer, s.Subject)[0], e); err != nil {
		return err
	}
	if s.SessionID == "" {
		return nil
	}
	key := m.idx.keys(indexBySID, s.Issuer, s.SessionID)[0]
	if err := m.indexAdd(ctx, key, e); err != nil {
		return err
	}
	// After indexing: a logout of this sid that read the index before
	// the entry was there has left its mark already (EndSessions marks
	// first), and this login must not outlive it.
	if _, err := m.store.Get(ctx, endedPrefix+key[len(indexPrefix):]); err == nil {
		return ErrLoginEnded
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

func (m *Manager) indexAdd(ctx context.Context, key string, e indexEntry) error {
	return m.withIndexLock(ctx, key, func() error {
		now := m.now()
		entries, err := m.indexRead(ctx, key)
		if err != nil {
			return err
		}
		entries = slices.DeleteFunc(entries, func(x indexEntry) bool { return !x.expires.After(now) })
		entries = append(entries, e)
		var over []indexEntry
		if len(entries) > maxIndexEntries {
			// Sign-outs and idle expiry leave their entries behind: drop
			// those of sessions that are gone before any live one.
			if entries, err = m.dropGone(ctx, entries); err != nil {
				return err
			}
		}
		if len(entries) > maxIndexEntries {
			slices.SortFunc(entries, func(a, b indexEntry) int { return a.expires.Compare(b.expires) })
			over = slices.Clone(entries[:len(entries)-maxIndexEntries])
			entries = entries[len(entries)-maxIndexEntries:]
		}
		// A session the index drops could not be ended by a logout that
		// names its user: it ends now. A user keeps maxIndexEntries
		// sessions at one server; a further login ends the oldest.
		defer func() {
			for _, x := range over {
				_ = m.Delete(context.WithoutCancel(ctx), x.ticket)
			}
		}()
		last := now
		for _, x := range entries {
			last = later(last, x.expires)
		}
		record, err := m.idx.encode(key, entries)
		if err != nil {
			return err
		}
		return m.store.Set(ctx, key, record, last.Sub(now)+time.Second)
	})
}

// dropGone removes the entries whose session record is no longer in the
// store.
func (m *Manager) dropGone(ctx context.Context, entries []indexEntry) ([]indexEntry, error) {
	kept := entries[:0]
	for _, e := range entries {
		_, err := m.store.Get(ctx, e.ticket.storageKey())
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		default:
			kept = append(kept, e)
		}
	}
	return kept, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// indexRead returns key's entries; none when the record is absent or no
// longer opens (a secret dropped from previous_secrets).
func (m *Manager) indexRead(ctx context.Context, key string) ([]indexEntry, error) {
	record, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := m.idx.decode(key, record)
	if err != nil {
		return nil, nil
	}
	return entries, nil
}

// withIndexLock runs f holding key's lock, waiting up to about two seconds
// for another holder.
func (m *Manager) withIndexLock(ctx context.Context, key string, f func() error) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		unlock, err := m.store.Lock(ctx, lockPrefix+key, indexLockTTL)
		if err == nil {
			defer func() { _ = unlock(context.WithoutCancel(ctx)) }()
			return f()
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			return fmt.Errorf("session: index: %w", err)
		}
		if err := sleep(ctx, jitter(20*time.Millisecond)); err != nil {
			return err
		}
	}
}

// EndSessions ends, on every replica, the sessions that issuer's logout
// names: with sid, the sessions of that login session at the server (of
// user sub only, when sub is given too); with sid empty, every session of
// user sub. It returns the sessions it ended, so the caller can revoke their
// tokens; sessions already gone are skipped.
func (m *Manager) EndSessions(ctx context.Context, issuer, sub, sid string) ([]*Session, error) {
	if issuer == "" || sub == "" && sid == "" {
		return nil, errors.New("session: end sessions: an issuer and a sub or sid are required")
	}
	kind, value := indexBySubject, sub
	if sid != "" {
		kind, value = indexBySID, sid
	}
	var ended []*Session
	if sid != "" {
		// A login of this sid completing now must see that it ended (see
		// index): marked before the index is read, for as long as a
		// pending login lives.
		key := m.idx.keys(indexBySID, issuer, sid)[0]
		if err := m.store.Set(ctx, endedPrefix+key[len(indexPrefix):], []byte{1}, m.cfg.LoginTimeout+time.Minute); err != nil {
			return nil, fmt.Errorf("session: end sessions: %w", err)
		}
	}
	for _, key := range m.idx.keys(kind, issuer, value) {
		// Most keys name nothing (a stale or made-up sid): no lock then.
		if entries, err := m.indexRead(ctx, key); err != nil {
			return ended, fmt.Errorf("session: end sessions: %w", err)
		} else if len(entries) == 0 {
			continue
		}
		err := m.withIndexLock(ctx, key, func() error {
			entries, err := m.indexRead(ctx, key)
			if err != nil {
				return err
			}
			var keep []indexEntry
			for _, e := range entries {
				s, _, err := m.loadStored(ctx, &e.ticket, e.ticket.storageKey())
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if s.Issuer != issuer || sid != "" && s.SessionID != sid || sub != "" && s.Subject != sub {
					keep = append(keep, e) // another user's session under a colliding sid
					continue
				}
				if err := m.Delete(ctx, e.ticket); err != nil {
					return err
				}
				ended = append(ended, s)
			}
			if len(keep) == 0 {
				return m.store.Delete(ctx, key)
			}
			record, err := m.idx.encode(key, keep)
			if err != nil {
				return err
			}
			return m.store.Set(ctx, key, record, m.cfg.MaxLifetime)
		})
		if err != nil {
			return ended, fmt.Errorf("session: end sessions: %w", err)
		}
	}
	return ended, nil
}
