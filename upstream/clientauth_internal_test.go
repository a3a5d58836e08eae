package upstream

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestThumbprintRFC7638Example(t *testing.T) {
	// RFC 7638 §3.1.
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	raw, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(raw), E: 65537})
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; err != nil || got != want {
		t.Errorf("thumbprint: got %q, %v, want %q", got, err, want)
	}
}

// TestCertFilesRotation pins that a renewed client certificate is used
// from the next handshake on, and that a half-written renewal keeps the
// last good pair.
func TestCertFilesRotation(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(p string, data []byte, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	first, second := upstreamtest.NewClientCertificate("first"), upstreamtest.NewClientCertificate("second")
	t0 := time.Now().Add(-time.Hour)
	write(certPath, first.CertPEM, t0)
	write(keyPath, first.KeyPEM, t0)
	cf, err := newCertFiles(certPath, keyPath)
	if err != nil {
		t.Fatalf("newCertFiles: %v", err)
	}
	leaf := func() []byte {
		t.Helper()
		c, err := cf.get(nil)
		if err != nil || c == nil || len(c.Certificate) == 0 {
			t.Fatalf("get: got %v, %v", c, err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(leaf(), first.Certificate.Raw) {
		t.Fatal("get: got another certificate than the first")
	}
	// The certificate renewed, the key not yet: the old pair stays.
	write(certPath, second.CertPEM, t0.Add(time.Minute))
	if !bytes.Equal(leaf(), first.Certificate.Raw) {
		t.Error("half-written renewal: got another certificate, want the last good pair")
	}
	write(keyPath, second.KeyPEM, t0.Add(time.Minute))
	if !bytes.Equal(leaf(), second.Certificate.Raw) {
		t.Error("after renewal: got the old certificate, want the new one")
	}
	// Files gone: the last good pair stays.
	os.Remove(certPath)
	if !bytes.Equal(leaf(), second.Certificate.Raw) {
		t.Error("files removed: got another certificate, want the last good pair")
	}
}
