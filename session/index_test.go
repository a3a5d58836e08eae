package session

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// indexed creates a session of sub at issuer with the server's session sid.
func indexed(t *testing.T, m *Manager, issuer, sub, sid string) Ticket {
	t.Helper()
	s := testSession()
	s.Subject, s.Issuer, s.SessionID, s.Upstream = sub, issuer, sid, ""
	tk, err := m.Create(context.Background(), s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return tk
}

func alive(t *testing.T, m *Manager, tk Ticket) bool {
	t.Helper()
	_, _, err := m.Load(context.Background(), tk)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load: %v", err)
	}
	return err == nil
}

// TestEndSessions: a logout naming a server's session id ends exactly its
// sessions; one naming a user ends all of theirs at that server, and no
// one else's — another user, the same user at another server.
func TestEndSessions(t *testing.T) {
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			var store Store = NewMemoryStore(clk.Now, 0)
			if name == "redis" {
				store, _ = redisStore(t)
			}
			m := newManager(t, testConfig(t), store, clk.Now)
			defer m.Close()
			const iss, other = "https://idp.example", "https://other.example"
			a1 := indexed(t, m, iss, "alice", "sid-1")
			a2 := indexed(t, m, iss, "alice", "sid-1")
			a3 := indexed(t, m, iss, "alice", "sid-2")
			bob := indexed(t, m, iss, "bob", "sid-3")
			elsewhere := indexed(t, m, other, "alice", "sid-1")

			ended, err := m.EndSessions(context.Background(), iss, "", "sid-1")
			if err != nil || len(ended) != 2 {
				t.Fatalf("EndSessions(sid-1): %d ended, %v; want 2", len(ended), err)
			}
			if alive(t, m, a1) || alive(t, m, a2) || !alive(t, m, a3) || !alive(t, m, bob) || !alive(t, m, elsewhere) {
				t.Errorf("after ending sid-1: a1 %t a2 %t a3 %t bob %t elsewhere %t; want only a3, bob, elsewhere alive",
					alive(t, m, a1), alive(t, m, a2), alive(t, m, a3), alive(t, m, bob), alive(t, m, elsewhere))
			}
			if ended[0].Token.RefreshToken.IsZero() {
				t.Error("the ended sessions come back without their refresh tokens (the caller revokes them)")
			}
			ended, err = m.EndSessions(context.Background(), iss, "alice", "")
			if err != nil || len(ended) != 1 {
				t.Fatalf("EndSessions(alice): %d ended, %v; want 1 (a3)", len(ended), err)
			}
			if alive(t, m, a3) || !alive(t, m, bob) || !alive(t, m, elsewhere) {
				t.Error("ending alice's sessions at one server touched another user's or another server's")
			}
			// A sid of another user does not end alice's sessions.
			a4 := indexed(t, m, iss, "alice", "sid-9")
			if ended, _ := m.EndSessions(context.Background(), iss, "bob", "sid-9"); len(ended) != 0 || !alive(t, m, a4) {
				t.Error("a logout naming bob and alice's sid ended alice's session")
			}
			if _, err := m.EndSessions(context.Background(), "", "alice", ""); err == nil {
				t.Error("EndSessions without an issuer: no error")
			}
		})
	}
}

// TestIndexBounded: a user's index record never lists more than
// maxIndexEntries sessions; a further login ends the oldest, so no session
// is left that a logout naming the user would miss.
func TestIndexBounded(t *testing.T) {
	clk := newFakeClock()
	store := NewMemoryStore(clk.Now, 0)
	m := newManager(t, testConfig(t), store, clk.Now)
	var tickets []Ticket
	for range maxIndexEntries + 3 {
		tickets = append(tickets, indexed(t, m, "https://idp.example", "alice", ""))
		clk.Advance(time.Second)
	}
	for i, tk := range tickets {
		if want := i >= 3; alive(t, m, tk) != want {
			t.Errorf("session %d alive %t, want %t (the 3 oldest end)", i, !want, want)
		}
	}
	ended, err := m.EndSessions(context.Background(), "https://idp.example", "alice", "")
	if err != nil || len(ended) != maxIndexEntries {
		t.Errorf("EndSessions: %d, %v; want %d", len(ended), err, maxIndexEntries)
	}
}

// TestIndexHidesUserAndTickets: the store sees neither the subject nor a
// ticket, and sessions without an issuer are not indexed.
func TestIndexHidesUserAndTickets(t *testing.T) {
	clk := newFakeClock()
	store := NewMemoryStore(clk.Now, 0)
	m := newManager(t, testConfig(t), store, clk.Now)
	tk := indexed(t, m, "https://idp.example", "alice-canary-subject", "sid-canary")
	for _, key := range m.idx.keys(indexBySubject, "https://idp.example", "alice-canary-subject") {
		rec, err := store.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("index record: %v", err)
		}
		if strings.Contains(key+string(rec), "alice-canary") || strings.Contains(string(rec), string(tk.marshal()[1:17])) {
			t.Error("the index record shows the subject or the ticket")
		}
	}
	s := testSession()
	s.Issuer = ""
	if _, err := m.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get(context.Background(), m.idx.keys(indexBySubject, "", s.Subject)[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("a session without an issuer was indexed: %v", err)
	}
}

// TestEndSessionsReachesEveryReplica: two managers on one Redis; a session
// cached on B ends there within a second of A ending it by user.
func TestEndSessionsReachesEveryReplica(t *testing.T) {
	store, _ := redisStore(t)
	cfg := testConfig(t)
	a, b := newManager(t, cfg, store, nil), newManager(t, cfg, store, nil)
	defer a.Close()
	defer b.Close()
	for !b.CacheInUse() {
		time.Sleep(time.Millisecond) // subscribing
	}
	tk := indexed(t, a, "https://idp.example", "alice", "sid-1")
	if !alive(t, b, tk) || !alive(t, b, tk) {
		t.Fatal("B cannot load the session")
	}
	if ended, err := a.EndSessions(context.Background(), "https://idp.example", "alice", ""); err != nil || len(ended) != 1 {
		t.Fatalf("EndSessions on A: %d, %v", len(ended), err)
	}
	deadline := time.Now().Add(time.Second)
	for alive(t, b, tk) {
		if time.Now().After(deadline) {
			t.Fatal("B still serves the session 1 s after A ended it")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClaim: a one-time identifier is new once, on every replica.
func TestClaim(t *testing.T) {
	store, _ := redisStore(t)
	cfg := testConfig(t)
	a, b := newManager(t, cfg, store, nil), newManager(t, cfg, store, nil)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	if first, err := a.Claim(ctx, "iss\x00jti-1", time.Minute); !first || err != nil {
		t.Fatalf("first claim: %t, %v", first, err)
	}
	if first, _ := b.Claim(ctx, "iss\x00jti-1", time.Minute); first {
		t.Error("the same id claimed again on another replica: reported new")
	}
	if first, _ := b.Claim(ctx, "iss\x00jti-2", time.Minute); !first {
		t.Error("another id: reported used")
	}
}

// TestIndexForgetsEndedSessions: sessions signed out one after another do
// not fill the user's index: the cap ends no live session while gone ones
// can make room (the review's 64 sign-in/sign-out cycles).
func TestIndexForgetsEndedSessions(t *testing.T) {
	clk := newFakeClock()
	m := newManager(t, testConfig(t), NewMemoryStore(clk.Now, 0), clk.Now)
	live := indexed(t, m, "https://idp.example", "alice", "")
	for range maxIndexEntries + 5 {
		tk := indexed(t, m, "https://idp.example", "alice", "")
		if err := m.Delete(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	if !alive(t, m, live) {
		t.Fatal("signed-out sessions crowded the one live session out of the index, and it ended")
	}
	if ended, err := m.EndSessions(context.Background(), "https://idp.example", "alice", ""); err != nil || len(ended) != 1 {
		t.Errorf("EndSessions: %d, %v; want the live session", len(ended), err)
	}
}

// TestLoginAfterItsLogout: a logout that names a sid before the login of
// that sid completes (the server ended the login while its code was on the
// way) leaves no session behind: Create refuses it.
func TestLoginAfterItsLogout(t *testing.T) {
	clk := newFakeClock()
	m := newManager(t, testConfig(t), NewMemoryStore(clk.Now, 0), clk.Now)
	ctx := context.Background()
	if _, err := m.EndSessions(ctx, "https://idp.example", "", "sid-late"); err != nil {
		t.Fatal(err)
	}
	s := testSession()
	s.Issuer, s.SessionID = "https://idp.example", "sid-late"
	if _, err := m.Create(ctx, s); !errors.Is(err, ErrLoginEnded) {
		t.Fatalf("Create of an ended login session: %v, want ErrLoginEnded", err)
	}
	s.SessionID = "sid-new"
	if _, err := m.Create(ctx, s); err != nil {
		t.Errorf("Create of another login session: %v", err)
	}
	clk.Advance(m.Config().LoginTimeout + 2*time.Minute)
	s.SessionID = "sid-late"
	if _, err := m.Create(ctx, s); err != nil {
		t.Errorf("the mark outlived any pending login: %v", err)
	}
}
