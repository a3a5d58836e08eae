package session

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

func TestTicketCookieRoundTrip(t *testing.T) {
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	tk, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.EncodeTicket(tk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.DecodeTicket(v)
	if err != nil {
		t.Fatalf("DecodeTicket: %v", err)
	}
	if got != tk {
		t.Fatal("DecodeTicket: got a different ticket, want the encoded one")
	}
	if strings.Contains(v, base64.RawURLEncoding.EncodeToString(tk.id[:])) || strings.Contains(v, base64.URLEncoding.EncodeToString(tk.key[:])) {
		t.Fatal("cookie value shows the ticket in the clear, want it encrypted")
	}
	if _, err := m.EncodeTicket(Ticket{}); err == nil {
		t.Fatal("EncodeTicket(zero): got nil error, want one")
	}
}

// TestDecodeTicketRefuses sends the cookie attacks of SECURITY.md §17.
func TestDecodeTicketRefuses(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg, NewMemoryStore(nil, 0), nil)
	tk, _ := NewTicket()
	good, _ := m.EncodeTicket(tk)

	other := cfg
	other.Cookie.Secret = newSecret(t)
	foreign := newManager(t, other, NewMemoryStore(nil, 0), nil)
	foreignValue, _ := foreign.EncodeTicket(tk)

	renamed := cfg
	renamed.Cookie.Name = "_other"
	renamedValue, _ := newManager(t, renamed, NewMemoryStore(nil, 0), nil).EncodeTicket(tk)

	b, _ := NewBinding()
	bindingValue, _ := m.EncodeBinding(b)
	// A ticket-shaped payload minted as a binding cookie: only the MAC name
	// tells the kinds apart, and it must.
	ticketAsBinding, err := m.bindings.encode(tk.marshal())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct{ name, value string }{
		{"empty", ""},
		{"garbage", "not-a-cookie"},
		{"tampered last char", flip(good, len(good)-2)},
		{"tampered first char", flip(good, 0)},
		{"tampered middle", flip(good, len(good)/2)},
		{"truncated", good[:len(good)-4]},
		{"wrong secret", foreignValue},
		{"other cookie name", renamedValue},
		{"binding value replayed as ticket", bindingValue},
		{"ticket-shaped binding replayed as ticket", ticketAsBinding},
		{"oversized", good + strings.Repeat("A", 4096)},
		{"expired (older than max_lifetime)", reMAC(t, cfg, cfg.Cookie.Name, good, time.Now().Add(-cfg.MaxLifetime-time.Minute))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.DecodeTicket(tt.value)
			if !errors.Is(err, ErrInvalidCookie) || !got.IsZero() {
				t.Fatalf("DecodeTicket: got %v, %v, want zero ticket and ErrInvalidCookie", got.IsZero(), err)
			}
		})
	}
	// Control: the re-MAC helper itself produces valid cookies, so the
	// expiry case above fails because of its age alone.
	fresh := reMAC(t, cfg, cfg.Cookie.Name, good, time.Now().Add(-cfg.MaxLifetime+time.Minute))
	if _, err := m.DecodeTicket(fresh); err != nil {
		t.Fatalf("DecodeTicket of a cookie just within max_lifetime: %v", err)
	}
}

// TestCookieKeyRotation: a cookie minted under a secret that has since moved
// to previous_secrets still decodes; once the secret is retired, it does not.
func TestCookieKeyRotation(t *testing.T) {
	oldCfg := testConfig(t)
	oldM := newManager(t, oldCfg, NewMemoryStore(nil, 0), nil)
	tk, _ := NewTicket()
	v, _ := oldM.EncodeTicket(tk)
	b, _ := NewBinding()
	bv, _ := oldM.EncodeBinding(b)

	rotated := oldCfg
	rotated.Cookie.Secret = newSecret(t)
	rotated.Cookie.PreviousSecrets = []upstream.Secret{oldCfg.Cookie.Secret}
	m := newManager(t, rotated, NewMemoryStore(nil, 0), nil)
	if got, err := m.DecodeTicket(v); err != nil || got != tk {
		t.Fatalf("DecodeTicket under a previous secret: got err %v, want the ticket", err)
	}
	if got, err := m.DecodeBinding(bv); err != nil || got != b {
		t.Fatalf("DecodeBinding under a previous secret: got err %v, want the binding", err)
	}
	// New cookies use the new secret: the old gateway cannot read them.
	nv, _ := m.EncodeTicket(tk)
	if _, err := oldM.DecodeTicket(nv); !errors.Is(err, ErrInvalidCookie) {
		t.Fatalf("old manager decoding a cookie under the new secret: got %v, want ErrInvalidCookie", err)
	}

	retired := rotated
	retired.Cookie.PreviousSecrets = nil
	r := newManager(t, retired, NewMemoryStore(nil, 0), nil)
	if _, err := r.DecodeTicket(v); !errors.Is(err, ErrInvalidCookie) {
		t.Fatalf("DecodeTicket under a retired secret: got %v, want ErrInvalidCookie", err)
	}
}

func TestBindingCookie(t *testing.T) {
	cfg := testConfig(t)
	m := newManager(t, cfg, NewMemoryStore(nil, 0), nil)
	b, err := NewBinding()
	if err != nil {
		t.Fatal(err)
	}
	v, err := m.EncodeBinding(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.DecodeBinding(v); err != nil || got != b {
		t.Fatalf("DecodeBinding: got err %v, want the binding", err)
	}
	if got, want := m.BindingCookieName(), cfg.Cookie.Name+"_csrf"; got != want {
		t.Fatalf("BindingCookieName: got %q, want %q", got, want)
	}
	tk, _ := NewTicket()
	tv, _ := m.EncodeTicket(tk)
	tests := []struct{ name, value string }{
		{"ticket replayed as binding", tv},
		{"tampered", flip(v, len(v)/2)},
		{"expired (older than login_timeout)", reMAC(t, cfg, cfg.Cookie.Name+"_csrf", v, time.Now().Add(-cfg.LoginTimeout-time.Minute))},
	}
	for _, tt := range tests {
		if _, err := m.DecodeBinding(tt.value); !errors.Is(err, ErrInvalidCookie) {
			t.Errorf("%s: DecodeBinding: got %v, want ErrInvalidCookie", tt.name, err)
		}
	}
}

func TestTicketAndBindingRedacted(t *testing.T) {
	tk, _ := NewTicket()
	b, _ := NewBinding()
	for _, v := range []any{tk, b} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			if got := fmt.Sprintf(verb, v); got != "[redacted]" {
				t.Errorf("Sprintf(%q, %T): got %q, want [redacted]", verb, v, got)
			}
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
		js, _ := json.Marshal(map[string]any{"v": v})
		for _, out := range []string{buf.String(), string(js)} {
			if !strings.Contains(out, `"v":"[redacted]"`) {
				t.Errorf("%T in slog/JSON: got %s, want \"v\":\"[redacted]\"", v, out)
			}
		}
	}
}

// flip changes one character of a cookie value.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// reMAC re-issues a securecookie value with another timestamp, correctly
// authenticated under cfg's secret: securecookie's clock cannot be injected,
// and this proves MaxAge is enforced on its own.
func reMAC(t *testing.T, cfg Config, name, value string, at time.Time) string {
	t.Helper()
	secret, err := decodeSecret(cfg.Cookie.Secret)
	if err != nil {
		t.Fatal(err)
	}
	hashKey, _ := hkdf.Key(sha256.New, secret, nil, hashKeyInfo, 64)
	raw, err := base64.URLEncoding.DecodeString(value)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(string(raw), "|", 3) // date|value|mac
	body := fmt.Sprintf("%s|%d|%s", name, at.Unix(), parts[1])
	mac := hmac.New(sha256.New, hashKey)
	mac.Write([]byte(body))
	out := body[len(name)+1:] + "|" + string(mac.Sum(nil))
	return base64.URLEncoding.EncodeToString([]byte(out))
}

// FuzzDecodeCookies: any cookie value decodes to nothing (an error) or to
// what was encoded; a tampered or foreign value never yields a ticket,
// and the decoders never panic. A value that decodes as a ticket must be
// one this manager issued (only the seeds are).
func FuzzDecodeCookies(f *testing.F) {
	cfg := testConfig(f)
	m := newManager(f, cfg, NewMemoryStore(nil, 0), nil)
	issued := map[string]Ticket{}
	for range 3 {
		tk, _ := NewTicket()
		v, err := m.EncodeTicket(tk)
		if err != nil {
			f.Fatal(err)
		}
		issued[v] = tk
		f.Add(v)
		f.Add(v[:len(v)/2])
		f.Add(v + "x")
	}
	for _, s := range []string{"", "|", "a|b|c", "MTcwMDAwMDAwMHx8", strings.Repeat("A", 5000), "\"quoted\"", "%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		tk, err := m.DecodeTicket(value)
		if err == nil {
			want, ok := issued[value]
			if !ok || tk != want {
				t.Fatalf("DecodeTicket(%q) accepted a value this manager never issued", value)
			}
		}
		if _, err := m.DecodeBinding(value); err == nil {
			t.Fatalf("DecodeBinding(%q) accepted a value no binding was encoded as", value)
		}
	})
}
