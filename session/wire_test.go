package session

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestWireRoundTrip: the binary form keeps every field, and the JSON of
// earlier releases still reads (sessions in Redis survive the upgrade).
func TestWireRoundTrip(t *testing.T) {
	in := testSession()
	in.User = "ada@example.com"
	in.Token.Issued = time.Unix(0, 1700000000123456789)
	in.CreatedAt = time.Unix(0, 1700000000000000001)
	in.LastSeen = time.Unix(0, -5) // negative varints too
	in.Upstream, in.Issuer, in.SessionID = "customers", "https://login.customers.example", "sid-1"
	b, err := marshalSession(in)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != wireBinary {
		t.Fatalf("version byte %d, want %d", b[0], wireBinary)
	}
	out, err := unmarshalSession(b)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSessions(in, out) {
		t.Errorf("binary round trip:\n got %#v\nwant %#v", out, in)
	}
	empty, err := unmarshalSession(mustMarshal(t, &Session{}))
	if err != nil || !equalSessions(empty, &Session{}) {
		t.Errorf("empty session: %#v, %v", empty, err)
	}

	w := wireSession{Subject: in.Subject, User: in.User, Email: in.Email, Name: in.Name, PreferredUsername: in.PreferredUsername,
		EmailVerified: true, Groups: in.Groups, Claims: in.Claims, AccessToken: in.Token.AccessToken.Reveal(), TokenType: in.Token.TokenType,
		RefreshToken: in.Token.RefreshToken.Reveal(), IDToken: in.Token.IDToken.Reveal(), Expiry: in.Token.Expiry.UnixNano(),
		Issued: in.Token.Issued.UnixNano(), Scope: in.Token.Scope, CreatedAt: in.CreatedAt.UnixNano(), LastSeen: in.LastSeen.UnixNano()}
	j, _ := json.Marshal(&w)
	// Records of earlier releases carry no origin: the default upstream's.
	legacy := *in
	legacy.Upstream, legacy.Issuer, legacy.SessionID = "", "", ""
	old, err := unmarshalSession(append([]byte{wireJSON}, j...))
	if err != nil || !equalSessions(&legacy, old) {
		t.Errorf("a version 1 (JSON) record: %v\n got %#v\nwant %#v", err, old, &legacy)
	}
	// Version 2 is version 3 without the three origin strings.
	v2 := mustMarshal(t, &legacy)
	v2 = append([]byte{wireBinaryV2}, v2[1:len(v2)-3]...)
	if old, err := unmarshalSession(v2); err != nil || !equalSessions(&legacy, old) {
		t.Errorf("a version 2 record: %v\n got %#v\nwant %#v", err, old, &legacy)
	}
	if _, err := unmarshalSession(append(v2, 0, 0, 0)); err == nil {
		t.Error("a version 2 record with version 3's fields decoded")
	}
	if len(b) >= len(j) {
		t.Errorf("binary form %d bytes, JSON %d: want smaller", len(b), len(j))
	}
}

func mustMarshal(t *testing.T, s *Session) []byte {
	t.Helper()
	b, err := marshalSession(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalSessions(a, b *Session) bool {
	a2, b2 := *a, *b
	a2.derived, b2.derived = nil, nil
	for _, s := range []*Session{&a2, &b2} {
		for _, tm := range []*time.Time{&s.Token.Expiry, &s.Token.Issued, &s.CreatedAt, &s.LastSeen} {
			*tm = tm.UTC()
		}
		if len(s.Groups) == 0 {
			s.Groups = nil
		}
		if len(s.Claims) == 0 {
			s.Claims = nil
		}
	}
	return reflect.DeepEqual(a2, b2)
}

// TestWireRefusesDamage: every truncation and every flipped byte of a
// record either fails or decodes, never panics; truncations all fail.
func TestWireRefusesDamage(t *testing.T) {
	b := mustMarshal(t, testSession())
	for i := range len(b) {
		if _, err := unmarshalSession(b[:i]); err == nil {
			t.Errorf("a record cut at %d of %d bytes decoded", i, len(b))
		}
		for _, bit := range []byte{1, 0x80} {
			c := append([]byte(nil), b...)
			c[i] ^= bit
			_, _ = unmarshalSession(c)
		}
	}
	if _, err := unmarshalSession(append(b, 0)); err == nil {
		t.Error("a record with a trailing byte decoded")
	}
	huge := []byte{wireBinary, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := unmarshalSession(huge); err == nil {
		t.Error("a group count larger than the record decoded")
	}
}

func FuzzUnmarshalSession(f *testing.F) {
	b, _ := marshalSession(testSession())
	f.Add(b)
	f.Add([]byte{wireBinary})
	f.Add([]byte{wireJSON, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := unmarshalSession(data)
		if err != nil || data[0] != wireBinary && data[0] != wireBinaryV2 {
			return
		}
		again, err := unmarshalSession(mustMarshal(t, s))
		if err != nil || !equalSessions(s, again) {
			t.Errorf("re-encoding a decoded record changed it: %v", err)
		}
	})
}

func BenchmarkUnmarshalSession(b *testing.B) {
	bin, _ := marshalSession(testSession())
	s := testSession()
	j, _ := json.Marshal(&wireSession{Subject: s.Subject, Email: s.Email, Name: s.Name, Groups: s.Groups, Claims: s.Claims,
		AccessToken: "CANARY-ACCESS-7f3a", RefreshToken: "CANARY-REFRESH-9c1e", IDToken: "CANARY-IDTOKEN-42b0", CreatedAt: 1, LastSeen: 2})
	js := append([]byte{wireJSON}, j...)
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = unmarshalSession(bin)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = unmarshalSession(js)
		}
	})
}
