package session

import (
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"

	"github.com/authgate/authgate/upstream"
)

// Session is one signed-in user: who they are, the tokens the authorization
// server issued, and when the session began and was last used.
type Session struct {
	// Subject is the user's stable identifier (the ID token's "sub").
	Subject string
	// User names the user toward the backend (X-Forwarded-User): the claim
	// the upstream's claims.user mapping names. Empty means Subject; use
	// UserName to read it.
	User string
	// Email is the user's e-mail address; empty when unknown.
	Email string
	// Name is the user's display name; empty when unknown.
	Name string
	// PreferredUsername is the "preferred_username" claim; empty when unknown.
	PreferredUsername string
	// EmailVerified reports whether the server vouched for Email.
	EmailVerified bool
	// Groups lists the user's groups; nil when none.
	Groups []string
	// Claims holds further identity claims as a JSON object; nil when none.
	// It stays encoded: most requests never look at it, and decoding a map
	// on every session load was most of the load's allocations.
	Claims json.RawMessage
	// Token is the token set used toward the backend.
	Token upstream.Token
	// CreatedAt is when the user logged in; it starts the absolute timeout.
	CreatedAt time.Time
	// LastSeen is when the session was last used; it starts the idle timeout.
	LastSeen time.Time
	// Upstream names the authorization server that issued the session: its
	// key under `upstreams:`, or "" for the default (`upstream:`). A route
	// accepts only its own upstream's sessions (SECURITY.md 30).
	Upstream string
	// Issuer is that server's issuer identifier at login; empty for a
	// server configured without one.
	Issuer string
	// SessionID is the ID token's "sid" claim, the server's login session
	// (OpenID Connect Front- and Back-Channel Logout); empty without one.
	SessionID string

	// derived memoises values computed from the session (Derived), shared
	// by the copies the session cache hands out; never stored.
	derived *derivedValue
}

type derivedValue struct {
	once sync.Once
	v    any
}

// Derived returns compute(s), computed once for all the copies the session
// cache hands out of one stored version of the session (the proxy's header
// values), and on every call for a session that did not come from the
// cache. compute must depend only on the session's stored fields, not on
// LastSeen, and its result must be treated as read-only.
func (s *Session) Derived(compute func(*Session) any) any {
	d := s.derived
	if d == nil {
		return compute(s)
	}
	d.once.Do(func() { d.v = compute(s) })
	return d.v
}

// UserName is User, or Subject when User is empty.
func (s *Session) UserName() string {
	if s.User != "" {
		return s.User
	}
	return s.Subject
}

// The stored form of a session's plaintext starts with a version byte:
//
//	1: JSON (wireSession), written by earlier releases; still read.
//	2: binary, written now: the strings (uvarint length, bytes) Subject,
//	   User, Email, Name, PreferredUsername, a flags byte (bit 0:
//	   EmailVerified), the group count and groups, Claims, AccessToken,
//	   TokenType, RefreshToken, IDToken, Scope, then the times Expiry,
//	   Issued, CreatedAt, LastSeen as varint Unix nanoseconds (0: zero).
//	3: binary, written now: version 2 followed by the strings Upstream,
//	   Issuer and SessionID.
//
// The binary form decodes with two allocations (one string holding every
// field, the groups) where JSON took dozens, and is a third smaller.
const (
	wireJSON     byte = 1
	wireBinaryV2 byte = 2
	wireBinary   byte = 3
)

// wireSession is the JSON form of a Session (version 1). Times are Unix
// nanoseconds, 0 for the zero time.
type wireSession struct {
	Subject           string          `json:"sub"`
	User              string          `json:"us,omitempty"`
	Email             string          `json:"em,omitempty"`
	Name              string          `json:"nm,omitempty"`
	PreferredUsername string          `json:"pu,omitempty"`
	EmailVerified     bool            `json:"ev,omitempty"`
	Groups            []string        `json:"gr,omitempty"`
	Claims            json.RawMessage `json:"cl,omitempty"`
	AccessToken       string          `json:"at,omitempty"`
	TokenType         string          `json:"tt,omitempty"`
	RefreshToken      string          `json:"rt,omitempty"`
	IDToken           string          `json:"it,omitempty"`
	Expiry            int64           `json:"ex,omitempty"`
	Issued            int64           `json:"is,omitempty"`
	Scope             string          `json:"sc,omitempty"`
	CreatedAt         int64           `json:"ca"`
	LastSeen          int64           `json:"ls"`
}

// marshalSession encodes s in the binary form. Secrets are copied out with
// Reveal: upstream.Secret redacts itself everywhere else by design.
func marshalSession(s *Session) ([]byte, error) {
	strs := [...]string{s.Subject, s.User, s.Email, s.Name, s.PreferredUsername}
	toks := [...]string{s.Token.AccessToken.Reveal(), s.Token.TokenType, s.Token.RefreshToken.Reveal(), s.Token.IDToken.Reveal(), s.Token.Scope}
	origin := [...]string{s.Upstream, s.Issuer, s.SessionID}
	n := 1 + 1 + 4*binary.MaxVarintLen64 + binary.MaxVarintLen32 + len(s.Claims) + binary.MaxVarintLen32
	for _, v := range strs {
		n += len(v) + binary.MaxVarintLen32
	}
	for _, v := range toks {
		n += len(v) + binary.MaxVarintLen32
	}
	for _, v := range origin {
		n += len(v) + binary.MaxVarintLen32
	}
	for _, g := range s.Groups {
		n += len(g) + binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	b = append(b, wireBinary)
	for _, v := range strs {
		b = appendString(b, v)
	}
	var flags byte
	if s.EmailVerified {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(s.Groups)))
	for _, g := range s.Groups {
		b = appendString(b, g)
	}
	b = appendString(b, string(s.Claims))
	for _, v := range toks {
		b = appendString(b, v)
	}
	for _, t := range [...]time.Time{s.Token.Expiry, s.Token.Issued, s.CreatedAt, s.LastSeen} {
		b = binary.AppendVarint(b, unixNano(t))
	}
	for _, v := range origin {
		b = appendString(b, v)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// unmarshalSession decodes what marshalSession wrote, or the JSON of
// earlier releases.
func unmarshalSession(b []byte) (*Session, error) {
	if len(b) == 0 {
		return nil, errOpen
	}
	switch b[0] {
	case wireBinary, wireBinaryV2:
		return unmarshalBinary(b[1:], b[0])
	case wireJSON:
		return unmarshalJSON(b[1:])
	}
	return nil, errOpen
}

// wireReader reads the binary form; the first error sticks. Strings are
// slices of all, one string made of the whole record.
type wireReader struct {
	all string
	pos int
	bad bool
}

func (r *wireReader) uvarint() uint64 {
	var x uint64
	for i, shift := 0, uint(0); i < binary.MaxVarintLen64 && !r.bad; i, shift = i+1, shift+7 {
		if r.pos >= len(r.all) {
			break
		}
		c := r.all[r.pos]
		r.pos++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
	}
	r.bad = true
	return 0
}

func (r *wireReader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (r *wireReader) str() string {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.all)-r.pos) {
		r.bad = true
		return ""
	}
	s := r.all[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s
}

func (r *wireReader) byte() byte {
	if r.bad || r.pos >= len(r.all) {
		r.bad = true
		return 0
	}
	c := r.all[r.pos]
	r.pos++
	return c
}

func unmarshalBinary(b []byte, version byte) (*Session, error) {
	r := &wireReader{all: string(b)}
	s := &Session{Subject: r.str(), User: r.str(), Email: r.str(), Name: r.str(), PreferredUsername: r.str()}
	s.EmailVerified = r.byte()&1 != 0
	if n := r.uvarint(); n > 0 && n <= uint64(len(b)) {
		s.Groups = make([]string, n)
		for i := range s.Groups {
			s.Groups[i] = r.str()
		}
	} else if n > uint64(len(b)) {
		r.bad = true
	}
	if c := r.str(); c != "" {
		s.Claims = json.RawMessage(c)
	}
	s.Token.AccessToken = upstream.Secret(r.str())
	s.Token.TokenType = r.str()
	s.Token.RefreshToken = upstream.Secret(r.str())
	s.Token.IDToken = upstream.Secret(r.str())
	s.Token.Scope = r.str()
	s.Token.Expiry = fromUnixNano(r.varint())
	s.Token.Issued = fromUnixNano(r.varint())
	s.CreatedAt = fromUnixNano(r.varint())
	s.LastSeen = fromUnixNano(r.varint())
	if version >= wireBinary {
		s.Upstream, s.Issuer, s.SessionID = r.str(), r.str(), r.str()
	}
	if r.bad || r.pos != len(r.all) {
		return nil, errOpen
	}
	return s, nil
}

func unmarshalJSON(b []byte) (*Session, error) {
	var w wireSession
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	return &Session{
		Subject:           w.Subject,
		User:              w.User,
		Email:             w.Email,
		Name:              w.Name,
		PreferredUsername: w.PreferredUsername,
		EmailVerified:     w.EmailVerified,
		Groups:            w.Groups,
		Claims:            w.Claims,
		Token: upstream.Token{
			AccessToken:  upstream.Secret(w.AccessToken),
			TokenType:    w.TokenType,
			RefreshToken: upstream.Secret(w.RefreshToken),
			IDToken:      upstream.Secret(w.IDToken),
			Expiry:       fromUnixNano(w.Expiry),
			Issued:       fromUnixNano(w.Issued),
			Scope:        w.Scope,
		},
		CreatedAt: fromUnixNano(w.CreatedAt),
		LastSeen:  fromUnixNano(w.LastSeen),
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
