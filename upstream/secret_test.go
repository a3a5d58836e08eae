package upstream_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

// canary is a secret value that must never appear in any rendering.
const canary = "canary-7f3a9c1e-secret-value"

func TestSecretNeverPrinted(t *testing.T) {
	s := upstream.Secret(canary)
	tok := upstream.Token{AccessToken: s, RefreshToken: s, IDToken: s, TokenType: "Bearer", Expiry: time.Unix(0, 0)}
	cfg := upstream.Config{ClientID: "gw", ClientSecret: s}
	req := upstream.AuthRequest{State: "st", Nonce: s, Verifier: s}
	tests := []struct {
		name string
		out  string
	}{
		{"%s", fmt.Sprintf("%s", s)},
		{"%v", fmt.Sprintf("%v", s)},
		{"%+v", fmt.Sprintf("%+v", s)},
		{"%q", fmt.Sprintf("%q", s)},
		{"%x", fmt.Sprintf("%x", s)},
		{"%X", fmt.Sprintf("%X", s)},
		{"%#v", fmt.Sprintf("%#v", s)},
		{"%d", fmt.Sprintf("%d", s)},
		{"pointer %v", fmt.Sprintf("%v", &s)},
		{"Sprint", fmt.Sprint(s)},
		{"Println", fmt.Sprintln(s)},
		{"String", s.String()},
		{"GoString", s.GoString()},
		{"wrapped error", fmt.Errorf("context: %v", s).Error()},
		{"Token %v", fmt.Sprintf("%v", tok)},
		{"Token %+v", fmt.Sprintf("%+v", tok)},
		{"Token %#v", fmt.Sprintf("%#v", tok)},
		{"*Token %+v", fmt.Sprintf("%+v", &tok)},
		{"Config %+v", fmt.Sprintf("%+v", cfg)},
		{"Config %#v", fmt.Sprintf("%#v", cfg)},
		{"AuthRequest %+v", fmt.Sprintf("%+v", req)},
		{"slice %v", fmt.Sprintf("%v", []upstream.Secret{s})},
		{"map %v", fmt.Sprintf("%v", map[string]upstream.Secret{"k": s})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.out, canary) {
				t.Errorf("got %q, want no secret value", tt.out)
			}
			if !strings.Contains(tt.out, "[redacted]") {
				t.Errorf("got %q, want [redacted]", tt.out)
			}
		})
	}
}

func TestSecretSlog(t *testing.T) {
	s := upstream.Secret(canary)
	tok := upstream.Token{AccessToken: s, RefreshToken: s, IDToken: s}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		"json": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(h(&buf))
			log.Debug("secret", "value", s)
			log.Info("attr", slog.Any("value", s))
			log.Info("pointer", "value", &s)
			log.Info("token", "token", tok)
			log.Info("token pointer", "token", &tok)
			log.With("value", s).Warn("with")
			log.WithGroup("g").Error("group", "value", s)
			out := buf.String()
			if strings.Contains(out, canary) {
				t.Errorf("got log %q, want no secret value", out)
			}
			if got, want := strings.Count(out, "[redacted]"), 7; got < want {
				t.Errorf("got %d [redacted] markers, want at least %d in %q", got, want, out)
			}
		})
	}
}

func TestSecretJSON(t *testing.T) {
	s := upstream.Secret(canary)
	type holder struct {
		Name   string
		Secret upstream.Secret
		Ptr    *upstream.Secret
		List   []upstream.Secret
		Token  upstream.Token
	}
	v := holder{Name: "x", Secret: s, Ptr: &s, List: []upstream.Secret{s}, Token: upstream.Token{AccessToken: s, RefreshToken: s, IDToken: s}}
	for _, x := range []any{s, &s, v, &v} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", x, err)
		}
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("json.Marshal(%T): got %s, want no secret value", x, b)
		}
		if !bytes.Contains(b, []byte(`"[redacted]"`)) {
			t.Errorf("json.Marshal(%T): got %s, want \"[redacted]\"", x, b)
		}
	}
}

func TestSecretReveal(t *testing.T) {
	s := upstream.Secret(canary)
	if got := s.Reveal(); got != canary {
		t.Errorf("Reveal: got %q, want %q", got, canary)
	}
	if s.IsZero() {
		t.Error("IsZero: got true for a set secret, want false")
	}
	var zero upstream.Secret
	if !zero.IsZero() || zero.Reveal() != "" {
		t.Errorf("zero Secret: got IsZero %v Reveal %q, want true and empty", zero.IsZero(), zero.Reveal())
	}
	// errors built from a secret keep it out too.
	err := errors.New("x " + fmt.Sprint(s))
	if strings.Contains(err.Error(), canary) {
		t.Errorf("got %q, want no secret value", err)
	}
}
