package session

import (
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

// wireVersion is the first byte of an encoded session's plaintext.
const wireVersion byte = 1

// wireSession is the stored form of a Session. Secrets are copied out with
// Reveal: upstream.Secret redacts itself in JSON by design. Times are Unix
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

// marshalSession encodes s: the wire version byte, then JSON.
func marshalSession(s *Session) ([]byte, error) {
	w := wireSession{
		Subject:           s.Subject,
		User:              s.User,
		Email:             s.Email,
		Name:              s.Name,
		PreferredUsername: s.PreferredUsername,
		EmailVerified:     s.EmailVerified,
		Groups:            s.Groups,
		Claims:            s.Claims,
		AccessToken:       s.Token.AccessToken.Reveal(),
		TokenType:         s.Token.TokenType,
		RefreshToken:      s.Token.RefreshToken.Reveal(),
		IDToken:           s.Token.IDToken.Reveal(),
		Expiry:            unixNano(s.Token.Expiry),
		Issued:            unixNano(s.Token.Issued),
		Scope:             s.Token.Scope,
		CreatedAt:         unixNano(s.CreatedAt),
		LastSeen:          unixNano(s.LastSeen),
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, err
	}
	return append([]byte{wireVersion}, b...), nil
}

// unmarshalSession decodes what marshalSession wrote.
func unmarshalSession(b []byte) (*Session, error) {
	if len(b) == 0 || b[0] != wireVersion {
		return nil, errOpen
	}
	var w wireSession
	if err := json.Unmarshal(b[1:], &w); err != nil {
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
