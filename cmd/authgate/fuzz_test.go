package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParseConfig: any file either loads or fails with a configError (exit
// 2, never a panic), and no error message repeats a secret the environment
// supplied.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	if example, err := os.ReadFile("../../config.example.yaml"); err == nil {
		f.Add(example)
	}
	for _, s := range []string{"", "routes: [\n", "upstreams: {a: 1}", "upstream: []", "session: {cache: {ttl: -1h}}",
		"routes: [{backend: x, grant: password, upstream: \"${TEST_CLIENT_SECRET}\"}]", "&a [*a]", "listen: !!binary aGk="} {
		f.Add([]byte(s))
	}
	lookup := env(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseConfig(data, lookup)
		if err == nil {
			return
		}
		var ce *configError
		if !errors.As(err, &ce) {
			t.Fatalf("parseConfig: %T %v, want a *configError", err, err)
		}
		msg := err.Error()
		for _, secret := range []string{"s3cr3t-client", validSecret} {
			if strings.Contains(msg, secret) && !strings.Contains(string(data), secret) {
				t.Fatalf("an error repeats a secret from the environment: %s", msg)
			}
		}
	})
}
