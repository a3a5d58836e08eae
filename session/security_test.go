package session

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStoreDumpRevealsNothing plays an attacker who dumps Redis (KEYS * and
// GET each) after sessions and pending logins were stored with planted
// canaries: the dump must hold no token, verifier, identity or session id,
// and no record may decrypt without the key from the victim's cookie
// (SECURITY.md §13).
func TestStoreDumpRevealsNothing(t *testing.T) {
	store, srv := redisStore(t)
	m := newManager(t, testConfig(t), store, nil)
	ctx := t.Context()

	var tickets []Ticket
	for range 3 {
		tk, err := m.Create(ctx, testSession())
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	const state = "STATE-CANARY-0123456789abcdef"
	ls := &LoginState{Verifier: "CANARY-VERIFIER-5d6e", Nonce: "CANARY-NONCE-8a8b", RedirectTo: "/CANARY-REDIRECT"}
	if err := m.SaveState(ctx, state, ls); err != nil {
		t.Fatal(err)
	}

	rc := srv.Client(t)
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("dump: got %d keys, want 4", len(keys))
	}
	var dump bytes.Buffer
	records := map[string][]byte{}
	for _, k := range keys {
		v, err := rc.Get(ctx, k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		records[strings.TrimPrefix(k, "authgate:")] = v
		dump.WriteString(k + "\n")
		dump.Write(v)
		dump.WriteString("\n")
	}

	forbidden := []string{
		"CANARY", "ada@example.com", "Ada Lovelace", "user-1", "admins", "tenant",
		state, "STATE-CANARY",
	}
	for _, tk := range tickets {
		for _, b := range [][]byte{tk.id[:], tk.key[:]} {
			forbidden = append(forbidden, string(b), hex.EncodeToString(b),
				base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
				base64.RawStdEncoding.EncodeToString(b), base64.URLEncoding.EncodeToString(b))
		}
		cookie, _ := m.EncodeTicket(tk)
		forbidden = append(forbidden, cookie)
	}
	for _, f := range forbidden {
		if bytes.Contains(dump.Bytes(), []byte(f)) {
			t.Errorf("Redis dump contains %q", f)
		}
	}

	// Without the ticket's key no record decrypts: not with another key,
	// not with the right key under another storage key (records cannot be
	// swapped between sessions).
	other, _ := NewTicket()
	for _, tk := range tickets {
		rec, ok := records[tk.storageKey()]
		if !ok {
			t.Fatalf("no record under the ticket's storage key")
		}
		if _, err := open(other.key[:], tk.storageKey(), rec); !errors.Is(err, errOpen) {
			t.Errorf("open with a wrong key: got %v, want errOpen", err)
		}
		if _, err := open(tk.key[:], other.storageKey(), rec); !errors.Is(err, errOpen) {
			t.Errorf("open under another storage key: got %v, want errOpen", err)
		}
		if _, err := open(tk.key[:], tk.storageKey(), rec); err != nil {
			t.Errorf("open with the right key: %v", err)
		}
		// A ticket with the right id but a guessed key finds the record
		// and still gets nothing.
		guess := Ticket{id: tk.id}
		guess.key[0] = 1
		if _, _, err := m.Load(ctx, guess); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load with the right id and a wrong key: got %v, want ErrNotFound", err)
		}
	}
	// Another session's record planted under this ticket's key fails too.
	if err := store.Set(ctx, tickets[0].storageKey(), records[tickets[1].storageKey()], time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Load(ctx, tickets[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a record swapped in from another session: got %v, want ErrNotFound", err)
	}
}

// TestForgedCookieFromStoreKey plays an attacker who knows a storage key
// ("authgate:s:<hash>") and tries to turn it into a session cookie.
func TestForgedCookieFromStoreKey(t *testing.T) {
	store, srv := redisStore(t)
	m := newManager(t, testConfig(t), store, nil)
	ctx := t.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		t.Fatal(err)
	}
	key := "authgate:" + tk.storageKey()
	if n, _ := srv.Client(t).Exists(ctx, key).Result(); n != 1 {
		t.Fatalf("storage key %q not in Redis", key)
	}
	hash, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "authgate:s:"))
	if err != nil {
		t.Fatal(err)
	}

	// As a cookie value, verbatim or re-encoded: the MAC fails.
	for _, v := range []string{key, tk.storageKey(), strings.TrimPrefix(key, "authgate:s:"),
		base64.URLEncoding.EncodeToString(hash), base64.URLEncoding.EncodeToString(append([]byte{ticketVersion}, hash...))} {
		if _, err := m.DecodeTicket(v); !errors.Is(err, ErrInvalidCookie) {
			t.Errorf("DecodeTicket(%q): got %v, want ErrInvalidCookie", v, err)
		}
	}
	// Even an insider holding the cookie secret can mint a valid cookie only
	// for a ticket built from the hash, which names no session: the id is a
	// SHA-256 preimage and the key is not stored anywhere.
	var forged Ticket
	copy(forged.id[:], hash)
	copy(forged.key[:], hash)
	v, err := m.EncodeTicket(forged)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.DecodeTicket(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Load(ctx, got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load with a ticket forged from the storage key: got %v, want ErrNotFound", err)
	}
	if sum := sha256.Sum256(forged.id[:]); bytes.Equal(sum[:], hash) {
		t.Fatal("forged id hashes to the stored key: test is broken")
	}
}
