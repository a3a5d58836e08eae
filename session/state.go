package session

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/authgate/authgate/upstream"
)

// Labels that separate the state's storage key from its encryption key.
const (
	stateKeyLabel  = "authgate login state key v1\x00"
	stateSealLabel = "authgate login state seal v1"
)

// minStateLen is the shortest state accepted: 22 base64url characters carry
// 128 bits (RFC 9700 §4.7.1 asks for at least that).
const minStateLen = 22

// LoginState is a pending login, kept server-side under its OAuth "state"
// parameter so that parallel tabs and replicas work with one small cookie.
// The store holds it encrypted under a key derived from state, so a store
// dump reveals no PKCE verifier or nonce.
type LoginState struct {
	// Binding is the SHA-256 of the browser's Binding cookie value; set it
	// with BindTo and check it with BoundTo.
	Binding [32]byte
	// Verifier is the PKCE code_verifier (RFC 7636).
	Verifier upstream.Secret
	// Nonce is the OpenID Connect nonce sent with the authorization request.
	Nonce upstream.Secret
	// RedirectTo is where to send the browser after login (already validated).
	RedirectTo string
	// Route names the route that started the login.
	Route string
	// Silent marks a re-authentication sent with prompt=none: when the
	// server answers that the user must interact, the gateway starts an
	// ordinary login instead of showing an error.
	Silent bool
	// CreatedAt is when the login started; SaveState sets it when zero.
	CreatedAt time.Time
}

// BindTo ties ls to the browser holding b.
func (ls *LoginState) BindTo(b Binding) { ls.Binding = sha256.Sum256(b[:]) }

// BoundTo reports, in constant time, whether ls belongs to the browser
// holding b.
func (ls *LoginState) BoundTo(b Binding) bool {
	sum := sha256.Sum256(b[:])
	return subtle.ConstantTimeCompare(sum[:], ls.Binding[:]) == 1
}

// wireState is the stored form of a LoginState; secrets are copied out with
// Reveal.
type wireState struct {
	Binding    []byte `json:"b"`
	Verifier   string `json:"v"`
	Nonce      string `json:"n,omitempty"`
	RedirectTo string `json:"r,omitempty"`
	Route      string `json:"ro,omitempty"`
	Silent     bool   `json:"sl,omitempty"`
	CreatedAt  int64  `json:"ca"`
}

// SaveState stores ls under state for LoginTimeout. state must carry at least
// 128 bits (22 or more characters).
func (m *Manager) SaveState(ctx context.Context, state string, ls *LoginState) error {
	if len(state) < minStateLen {
		return errors.New("session: save state: state shorter than 128 bits")
	}
	if ls.CreatedAt.IsZero() {
		ls.CreatedAt = m.now()
	}
	pt, err := json.Marshal(&wireState{
		Binding:    ls.Binding[:],
		Verifier:   ls.Verifier.Reveal(),
		Nonce:      ls.Nonce.Reveal(),
		RedirectTo: ls.RedirectTo,
		Route:      ls.Route,
		Silent:     ls.Silent,
		CreatedAt:  unixNano(ls.CreatedAt),
	})
	if err != nil {
		return fmt.Errorf("session: save state: %w", err)
	}
	key := stateKey(state)
	sealKey, err := stateSealKey(state)
	if err != nil {
		return err
	}
	record, err := seal(sealKey, key, pt)
	if err != nil {
		return fmt.Errorf("session: save state: %w", err)
	}
	if err := m.store.Set(ctx, key, record, m.cfg.LoginTimeout); err != nil {
		return fmt.Errorf("session: save state: %w", err)
	}
	return nil
}

// TakeState returns and deletes the login saved under state: it can be taken
// once. It returns ErrNotFound when there is none, it cannot be decrypted, or
// it is older than LoginTimeout, and an error wrapping ErrUnavailable when
// the store fails.
func (m *Manager) TakeState(ctx context.Context, state string) (*LoginState, error) {
	if len(state) < minStateLen {
		return nil, ErrNotFound
	}
	key := stateKey(state)
	record, err := m.store.Take(ctx, key)
	if err != nil {
		return nil, err
	}
	sealKey, err := stateSealKey(state)
	if err != nil {
		return nil, err
	}
	pt, err := open(sealKey, key, record)
	if err != nil {
		return nil, ErrNotFound
	}
	var w wireState
	if err := json.Unmarshal(pt, &w); err != nil || len(w.Binding) != 32 {
		return nil, ErrNotFound
	}
	ls := &LoginState{
		Verifier:   upstream.Secret(w.Verifier),
		Nonce:      upstream.Secret(w.Nonce),
		RedirectTo: w.RedirectTo,
		Route:      w.Route,
		Silent:     w.Silent,
		CreatedAt:  fromUnixNano(w.CreatedAt),
	}
	copy(ls.Binding[:], w.Binding)
	if m.now().Sub(ls.CreatedAt) > m.cfg.LoginTimeout {
		return nil, ErrNotFound
	}
	return ls, nil
}

// stateKey is where the login for state lives.
func stateKey(state string) string {
	return hashKey(statePrefix, []byte(stateKeyLabel+state))
}

// stateSealKey derives the AES-256 key that seals the login for state.
func stateSealKey(state string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(state), nil, stateSealLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("session: derive state key: %w", err)
	}
	return k, nil
}
