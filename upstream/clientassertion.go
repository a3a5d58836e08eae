package upstream

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtBearer is the client_assertion_type of a JWT client assertion
// (RFC 7523 §2.2).
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a signed client assertion is valid: long
// enough for the request to arrive, short enough that a captured one is
// soon worthless (servers often refuse more than five minutes).
const assertionLifetime = 60 * time.Second

// keyAssertion is private_key_jwt with a key of our own: a fresh signed
// assertion per call (RFC 7523 §3, OpenID Connect Core §9).
type keyAssertion struct {
	id       string
	key      crypto.Signer
	method   jwt.SigningMethod
	kid      string
	issuer   string
	audience string // AssertionAudienceIssuer or AssertionAudienceTokenEndpoint
}

func newKeyAssertion(c *Config) (*keyAssertion, error) {
	key, err := readPrivateKey(c.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %w", err)
	}
	a := &keyAssertion{id: c.ClientID, key: key, kid: c.PrivateKeyID, issuer: c.Issuer, audience: c.ClientAssertionAudience}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return nil, fmt.Errorf("private_key_file: an RSA key of %d bits is too weak (at least 2048)", bits)
		}
		switch c.PrivateKeyAlgorithm {
		case "", "RS256":
			a.method = jwt.SigningMethodRS256
		case "PS256":
			a.method = jwt.SigningMethodPS256
		}
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("private_key_file: an EC key on %s; only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		if c.PrivateKeyAlgorithm == "" || c.PrivateKeyAlgorithm == "ES256" {
			a.method = jwt.SigningMethodES256
		}
	default:
		return nil, errors.New("private_key_file: only RSA and EC P-256 keys are supported")
	}
	if a.method == nil {
		if !slices.Contains([]string{"RS256", "PS256", "ES256"}, c.PrivateKeyAlgorithm) {
			return nil, fmt.Errorf("private_key_algorithm: must be RS256, PS256 or ES256, got %q", c.PrivateKeyAlgorithm)
		}
		return nil, fmt.Errorf("private_key_algorithm: %s does not fit the %s key in private_key_file", c.PrivateKeyAlgorithm, keyKind(key))
	}
	if a.kid == "" {
		if a.kid, err = thumbprint(key.Public()); err != nil {
			return nil, fmt.Errorf("private_key_file: %w", err)
		}
	}
	return a, nil
}

func (a *keyAssertion) authenticate(form url.Values, _ http.Header, call authCall) error {
	aud := a.issuer
	if a.audience == AssertionAudienceTokenEndpoint {
		aud = call.tokenEndpoint
	}
	// RFC 7523 §3: iss and sub are the client, aud the server (one
	// string, not a list: RFC 7523bis, against audience injection), a jti
	// the server can refuse to see twice, and a short exp.
	t := jwt.NewWithClaims(a.method, jwt.MapClaims{
		"iss": a.id,
		"sub": a.id,
		"aud": aud,
		"jti": rand.Text(),
		"iat": call.now.Unix(),
		"exp": call.now.Add(assertionLifetime).Unix(),
	})
	t.Header["kid"] = a.kid
	signed, err := t.SignedString(a.key)
	if err != nil {
		return fmt.Errorf("sign the client assertion: %w", err)
	}
	setAssertion(form, a.id, signed)
	return nil
}

// setAssertion puts a JWT client assertion in form (RFC 7523 §2.2); the
// client_id is optional there, but several servers want it.
func setAssertion(form url.Values, id, assertion string) {
	form.Set("client_id", id)
	form.Set("client_assertion_type", jwtBearer)
	form.Set("client_assertion", assertion)
}

// readPrivateKey reads the first private key of a PEM file: PKCS#8,
// PKCS#1 RSA or SEC1 EC. Other blocks (EC PARAMETERS, certificates) are
// skipped. No error shows the file's content.
func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := readCredentialFile(path)
	if err != nil {
		return nil, err
	}
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("not a PEM private key (want PKCS#8 \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")")
		}
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the key is encrypted; store it unencrypted, protected by file permissions")
		}
		var key any
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			// x509's message is left out: it is no help, and this file
			// is a secret.
			return nil, fmt.Errorf("the %s block does not parse", b.Type)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, errors.New("only RSA and EC P-256 keys are supported")
		}
		return signer, nil
	}
}

// keyKind names the type of key for messages.
func keyKind(key crypto.Signer) string {
	switch key.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PrivateKey:
		return "EC"
	}
	return "unsupported"
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of an
// RSA or P-256 public key: the hash of the required members in
// lexicographic order, without spaces (§3.2), coordinates at the curve's
// full length (RFC 7518 §6.2.1.2).
func thumbprint(pub crypto.PublicKey) (string, error) {
	enc := base64.RawURLEncoding
	var doc string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		doc = `{"e":"` + enc.EncodeToString(big.NewInt(int64(k.E)).Bytes()) + `","kty":"RSA","n":"` + enc.EncodeToString(k.N.Bytes()) + `"}`
	case *ecdsa.PublicKey:
		point, err := k.Bytes() // 0x04 || x || y
		if err != nil || k.Curve != elliptic.P256() {
			return "", errors.New("not a P-256 public key")
		}
		n := (len(point) - 1) / 2
		doc = `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(point[1:1+n]) + `","y":"` + enc.EncodeToString(point[1+n:]) + `"}`
	default:
		return "", errors.New("only RSA and EC P-256 keys are supported")
	}
	sum := sha256.Sum256([]byte(doc))
	return enc.EncodeToString(sum[:]), nil
}

// fileAssertion is private_key_jwt with an assertion someone else issues
// into a file (a Kubernetes projected service-account token): read when
// it changes, sent as is.
type fileAssertion struct {
	id, path string

	mu      sync.Mutex
	version os.FileInfo // of the file value was read from
	value   Secret
}

func newFileAssertion(id, path string) (*fileAssertion, error) {
	a := &fileAssertion{id: id, path: path}
	if _, err := a.current(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *fileAssertion) authenticate(form url.Values, _ http.Header, _ authCall) error {
	v, err := a.current()
	if err != nil {
		return err
	}
	setAssertion(form, a.id, v.Reveal())
	return nil
}

// current returns the file's assertion, read again only when a stat says
// the file changed: Kubernetes rotates by swapping a symlink, which
// os.Stat follows to a new inode.
func (a *fileAssertion) current() (Secret, error) {
	fi, err := os.Stat(a.path)
	if err != nil {
		return "", fmt.Errorf("client_assertion_file: cannot read: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if sameVersion(a.version, fi) {
		return a.value, nil
	}
	// Should the file change between the stat and the read, the next
	// call sees a newer version than fi and reads it again.
	data, err := readCredentialFile(a.path)
	if err != nil {
		return "", fmt.Errorf("client_assertion_file: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", errors.New("client_assertion_file: is empty")
	}
	if strings.Count(v, ".") != 2 || strings.ContainsAny(v, " \t\r\n") {
		return "", errors.New("client_assertion_file: does not hold a JWT (header.payload.signature)")
	}
	a.version, a.value = fi, Secret(v)
	return a.value, nil
}
