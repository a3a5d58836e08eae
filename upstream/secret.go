package upstream

import (
	"fmt"
	"log/slog"
)

// redacted is what a Secret prints instead of its value.
const redacted = "[redacted]"

// Secret is a string that must never reach a log line, an error message or a
// JSON document: client secrets, access, refresh and ID tokens, passwords.
// Every way of printing it (fmt verbs, slog, encoding/json) yields
// "[redacted]"; Reveal is the only way to read the value, so each use of the
// real value is visible in the code. The zero value is the empty secret.
type Secret string

// Reveal returns the secret value. Call it only where the value leaves the
// process on purpose: a request to the authorization server or the backend.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not print the value either.
func (s Secret) GoString() string { return redacted }

// Format prints "[redacted]" for every fmt verb (%s, %v, %q, %x, ...).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes log/slog print "[redacted]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the secret as "[redacted]"; code that must store the
// value (the session record) copies it out with Reveal.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
