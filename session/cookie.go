package session

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/authgate/authgate/upstream"
)

// HKDF labels for the securecookie keys; changing one retires every cookie.
const (
	hashKeyInfo  = "authgate cookie hmac-sha256 v1"
	blockKeyInfo = "authgate cookie aes-256 v1"
)

// bindingSuffix turns the session cookie's name into the binding cookie's.
const bindingSuffix = "_csrf"

// maxCookieValue bounds what a codec will decode: our values are ~200 bytes,
// anything near securecookie's 4096 default is an attack.
const maxCookieValue = 1024

// codec encodes one kind of cookie. Its name is part of the MAC, so a value
// minted for one kind fails under another. It tries the current key first,
// then the previous ones.
type codec struct {
	name  string
	coder []*securecookie.SecureCookie
}

// newCodec returns a codec for cookies named name that expire after maxAge,
// keyed by secrets (current first).
func newCodec(name string, maxAge time.Duration, secrets [][]byte) (codec, error) {
	c := codec{name: name}
	age := int((maxAge + time.Second - 1) / time.Second) // 0 would mean "no limit"
	for _, secret := range secrets {
		hashKey, err := hkdf.Key(sha256.New, secret, nil, hashKeyInfo, 64)
		if err != nil {
			return codec{}, fmt.Errorf("session: derive cookie key: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, secret, nil, blockKeyInfo, 32)
		if err != nil {
			return codec{}, fmt.Errorf("session: derive cookie key: %w", err)
		}
		sc := securecookie.New(hashKey, blockKey).
			SetSerializer(securecookie.NopEncoder{}).
			MaxAge(max(age, 1)).
			MaxLength(maxCookieValue)
		c.coder = append(c.coder, sc)
	}
	return c, nil
}

// encode authenticates and encrypts payload under the current key.
func (c codec) encode(payload []byte) (string, error) {
	v, err := c.coder[0].Encode(c.name, payload)
	if err != nil {
		return "", fmt.Errorf("session: encode %s cookie: %w", c.name, err)
	}
	return v, nil
}

// decode verifies and decrypts a cookie value under any configured key. Every
// failure is ErrInvalidCookie, without detail: the value is attacker input.
func (c codec) decode(value string) ([]byte, error) {
	if len(value) > maxCookieValue {
		return nil, ErrInvalidCookie
	}
	var b []byte
	for _, sc := range c.coder {
		if sc.Decode(c.name, value, &b) == nil {
			return b, nil
		}
	}
	return nil, ErrInvalidCookie
}

// cookieSecrets decodes the current and previous cookie secrets.
func cookieSecrets(cfg CookieConfig) ([][]byte, error) {
	var out [][]byte
	for i, s := range append([]upstream.Secret{cfg.Secret}, cfg.PreviousSecrets...) {
		b, err := decodeSecret(s)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("cookie.secret: %w", err)
			}
			return nil, fmt.Errorf("cookie.previous_secrets[%d]: %w", i-1, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// EncodeTicket returns the session cookie's value for t.
func (m *Manager) EncodeTicket(t Ticket) (string, error) {
	if t.IsZero() {
		return "", errors.New("session: encode ticket: zero ticket")
	}
	return m.tickets.encode(t.marshal())
}

// DecodeTicket parses a session cookie's value. It returns ErrInvalidCookie
// for a value that is tampered, older than MaxLifetime, encoded under an
// unknown secret, or minted for another cookie (the binding cookie). The name
// in the MAC is Config().Cookie.Name, without any "__Host-" prefix the proxy
// adds to the cookie itself.
func (m *Manager) DecodeTicket(cookieValue string) (Ticket, error) {
	if t, ok := m.cache.ticket(cookieValue); ok {
		return t, nil
	}
	b, err := m.tickets.decode(cookieValue)
	if err != nil {
		return Ticket{}, err
	}
	t, ok := unmarshalTicket(b)
	if !ok {
		return Ticket{}, ErrInvalidCookie
	}
	m.cache.putTicket(cookieValue, t)
	return t, nil
}

// BindingCookieName returns the binding cookie's base name, which is part of
// its MAC: the session cookie's base name + "_csrf". As with the session
// cookie, a "__Host-" prefix added by the proxy is not part of it.
func (m *Manager) BindingCookieName() string { return m.bindings.name }

// EncodeBinding returns the binding cookie's value for b (MAC name: the
// session cookie's base name + "_csrf"; valid for LoginTimeout).
func (m *Manager) EncodeBinding(b Binding) (string, error) {
	return m.bindings.encode(b[:])
}

// DecodeBinding parses a binding cookie's value, or returns ErrInvalidCookie.
func (m *Manager) DecodeBinding(cookieValue string) (Binding, error) {
	raw, err := m.bindings.decode(cookieValue)
	if err != nil {
		return Binding{}, err
	}
	var b Binding
	if len(raw) != len(b) {
		return Binding{}, ErrInvalidCookie
	}
	copy(b[:], raw)
	return b, nil
}
