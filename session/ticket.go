package session

import (
	"crypto/rand"
	"fmt"
	"log/slog"
)

// redacted is what a Ticket or Binding prints instead of its bytes.
const redacted = "[redacted]"

// ticketVersion is the first byte of an encoded ticket.
const ticketVersion byte = 1

// ticketLen is the length of an encoded ticket: version, id, key.
const ticketLen = 1 + 16 + 32

// Ticket is what the session cookie carries: a random 128-bit session id and
// a random 256-bit key that encrypts the session in the store. Only the
// holder of the cookie can find (by the id's hash) and read (with the key) its
// session. The zero Ticket names no session. A Ticket prints as "[redacted]".
type Ticket struct {
	id  [16]byte
	key [32]byte
	// skey is storageKey's value, made once with the ticket: a request
	// would otherwise pay a SHA-256 and two allocations for it. A
	// function of id, so tickets made alike stay equal.
	skey string
}

// NewTicket returns a ticket with a fresh random id and key.
func NewTicket() (Ticket, error) {
	var t Ticket
	if _, err := rand.Read(t.id[:]); err != nil {
		return Ticket{}, fmt.Errorf("session: new ticket: %w", err)
	}
	if _, err := rand.Read(t.key[:]); err != nil {
		return Ticket{}, fmt.Errorf("session: new ticket: %w", err)
	}
	t.skey = t.storageKey()
	return t, nil
}

// IsZero reports whether t is the zero Ticket.
func (t Ticket) IsZero() bool { return t == Ticket{} }

// String returns "[redacted]".
func (t Ticket) String() string { return redacted }

// GoString returns "[redacted]".
func (t Ticket) GoString() string { return redacted }

// Format prints "[redacted]" for every fmt verb.
func (t Ticket) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes log/slog print "[redacted]".
func (t Ticket) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the ticket as "[redacted]".
func (t Ticket) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// storageKey is where t's session lives: "s:" + base64url(SHA-256(id)).
func (t *Ticket) storageKey() string {
	if t.skey != "" {
		return t.skey
	}
	return hashKey(sessionPrefix, t.id[:])
}

// lockKey names t's refresh lock: "l:" + base64url(SHA-256(id)).
func (t *Ticket) lockKey() string { return hashKey(lockPrefix, t.id[:]) }

// marshal returns the cookie payload.
func (t *Ticket) marshal() []byte {
	b := make([]byte, 0, ticketLen)
	b = append(b, ticketVersion)
	b = append(b, t.id[:]...)
	return append(b, t.key[:]...)
}

// unmarshalTicket parses a cookie payload.
func unmarshalTicket(b []byte) (Ticket, bool) {
	var t Ticket
	if len(b) != ticketLen || b[0] != ticketVersion {
		return t, false
	}
	copy(t.id[:], b[1:17])
	copy(t.key[:], b[17:])
	if t.IsZero() {
		return Ticket{}, false
	}
	t.skey = t.storageKey()
	return t, true
}

// Binding is the random value of the browser-binding cookie that ties a
// pending login (its state) to the browser that started it (RFC 9700 §4.7).
// The server keeps only its SHA-256 (LoginState.Binding). A Binding prints as
// "[redacted]".
type Binding [32]byte

// NewBinding returns a fresh random Binding.
func NewBinding() (Binding, error) {
	var b Binding
	if _, err := rand.Read(b[:]); err != nil {
		return Binding{}, fmt.Errorf("session: new binding: %w", err)
	}
	return b, nil
}

// String returns "[redacted]".
func (b Binding) String() string { return redacted }

// GoString returns "[redacted]".
func (b Binding) GoString() string { return redacted }

// Format prints "[redacted]" for every fmt verb.
func (b Binding) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes log/slog print "[redacted]".
func (b Binding) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the binding as "[redacted]".
func (b Binding) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
