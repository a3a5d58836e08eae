package upstream

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
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

// maxCredentialFile bounds the key, certificate and assertion files read.
const maxCredentialFile = 64 << 10

// authCall is what client authentication may need to know of one call.
type authCall struct {
	// tokenEndpoint is the server's token endpoint URL, whichever
	// endpoint is called.
	tokenEndpoint string
	// now is the time of the call.
	now time.Time
}

// clientAuth adds this client's credentials to a POST to the
// authorization server. It is built once, from Config, and safe for
// concurrent use.
type clientAuth interface {
	authenticate(form url.Values, header http.Header, call authCall) error
}

var (
	_ clientAuth = secretBasic{}
	_ clientAuth = secretPost{}
	_ clientAuth = publicClient{}
	_ clientAuth = (*keyAssertion)(nil)
	_ clientAuth = (*fileAssertion)(nil)
	_ clientAuth = (*tlsClientAuth)(nil)
)

// newClientAuth checks the client authentication settings of c (defaults
// applied), loads the files they name, and returns the method; on any
// problem, the errors instead, each naming its key.
func newClientAuth(c *Config) (clientAuth, []error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	method := c.ClientAuth
	if !slices.Contains(clientAuthMethods, method) {
		bad("client_auth", "must be one of %s, got %q", strings.Join(clientAuthMethods, ", "), method)
		return nil, errs
	}
	// A setting the method ignores is a mistake: the operator believes
	// something is in effect that is not.
	for _, f := range [...]struct{ key, val, method string }{
		{"private_key_file", c.PrivateKeyFile, PrivateKeyJWT},
		{"client_assertion_file", c.ClientAssertionFile, PrivateKeyJWT},
		{"tls_client_cert_file", c.TLSClientCertFile, TLSClientAuth},
		{"tls_client_key_file", c.TLSClientKeyFile, TLSClientAuth},
	} {
		if f.val != "" && method != f.method {
			bad(f.key, "only used with client_auth %s (client_auth is %s)", f.method, method)
		}
	}
	if method == PrivateKeyJWT && c.PrivateKeyFile == "" {
		for _, f := range [...]struct{ key, val string }{
			{"private_key_id", c.PrivateKeyID},
			{"private_key_algorithm", c.PrivateKeyAlgorithm},
			{"client_assertion_audience", c.ClientAssertionAudience},
		} {
			if f.val != "" {
				bad(f.key, "only used with private_key_file")
			}
		}
	}
	usesSecret := method == ClientSecretBasic || method == ClientSecretPost
	switch {
	case usesSecret && c.ClientSecret.IsZero():
		bad("client_secret", "required with client_auth %s (for a public client, set client_auth: none)", method)
	case !usesSecret && !c.ClientSecret.IsZero():
		bad("client_secret", "not used with client_auth %s; remove it", method)
	}
	switch method {
	case PrivateKeyJWT:
		switch {
		case c.PrivateKeyFile != "" && c.ClientAssertionFile != "":
			bad("client_assertion_file", "cannot be combined with private_key_file: set one")
		case c.PrivateKeyFile == "" && c.ClientAssertionFile == "":
			bad("private_key_file", "required with client_auth private_key_jwt (or set client_assertion_file)")
		}
		switch c.ClientAssertionAudience {
		case "", AssertionAudienceTokenEndpoint:
		case AssertionAudienceIssuer:
			if c.Issuer == "" {
				bad("client_assertion_audience", "%q needs issuer to be set (or use %q)", AssertionAudienceIssuer, AssertionAudienceTokenEndpoint)
			}
		default:
			bad("client_assertion_audience", "must be %q or %q, got %q", AssertionAudienceIssuer, AssertionAudienceTokenEndpoint, c.ClientAssertionAudience)
		}
	case TLSClientAuth:
		if c.TLSClientCertFile == "" {
			bad("tls_client_cert_file", "required with client_auth tls_client_auth")
		}
		if c.TLSClientKeyFile == "" {
			bad("tls_client_key_file", "required with client_auth tls_client_auth")
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	var auth clientAuth
	switch method {
	case ClientSecretBasic:
		auth = secretBasic{id: c.ClientID, secret: c.ClientSecret}
	case ClientSecretPost:
		auth = secretPost{id: c.ClientID, secret: c.ClientSecret}
	case ClientAuthNone:
		auth = publicClient{id: c.ClientID}
	case PrivateKeyJWT:
		var err error
		if c.ClientAssertionFile != "" {
			auth, err = newFileAssertion(c.ClientID, c.ClientAssertionFile)
		} else {
			auth, err = newKeyAssertion(c)
		}
		if err != nil {
			return nil, []error{err}
		}
	case TLSClientAuth:
		cf, err := newCertFiles(c.TLSClientCertFile, c.TLSClientKeyFile)
		if err != nil {
			return nil, []error{err}
		}
		auth = &tlsClientAuth{id: c.ClientID, cert: cf}
	}
	return auth, nil
}

// secretBasic is client_secret_basic (RFC 6749 §2.3.1).
type secretBasic struct {
	id     string
	secret Secret
}

func (a secretBasic) authenticate(_ url.Values, header http.Header, _ authCall) error {
	header.Set("Authorization", "Basic "+basicCredential(a.id, a.secret))
	return nil
}

// basicCredential is the Basic credential of id and secret: both
// form-urlencoded before Base64 (RFC 6749 §2.3.1), which servers that
// decode only Base64 get wrong only for ids and secrets with reserved
// characters.
func basicCredential(id string, secret Secret) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret.Reveal())))
}

// secretPost is client_secret_post (RFC 6749 §2.3.1).
type secretPost struct {
	id     string
	secret Secret
}

func (a secretPost) authenticate(form url.Values, _ http.Header, _ authCall) error {
	form.Set("client_id", a.id)
	form.Set("client_secret", a.secret.Reveal())
	return nil
}

// publicClient is a client without credentials (RFC 6749 §2.1, §3.2.1).
type publicClient struct{ id string }

func (a publicClient) authenticate(form url.Values, _ http.Header, _ authCall) error {
	form.Set("client_id", a.id)
	return nil
}

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

// tlsClientAuth is tls_client_auth (RFC 8705 §2): the credential is the
// certificate of the TLS connection, the form names the client.
type tlsClientAuth struct {
	id   string
	cert *certFiles
}

func (a *tlsClientAuth) authenticate(form url.Values, _ http.Header, _ authCall) error {
	form.Set("client_id", a.id)
	return nil
}

// httpClient returns hc presenting the client certificate: a copy whose
// transport is a clone of hc's (http.DefaultTransport's when nil) with
// the certificate added. hc itself is returned unchanged when its
// transport already presents a certificate of its own, or is no
// *http.Transport, which then must present the certificate itself.
func (a *tlsClientAuth) httpClient(hc *http.Client) *http.Client {
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return hc
	}
	if tc := tr.TLSClientConfig; tc != nil && (len(tc.Certificates) > 0 || tc.GetClientCertificate != nil) {
		return hc
	}
	tr = tr.Clone()
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.GetClientCertificate = a.cert.get
	out := *hc
	out.Transport = tr
	return &out
}

// certFiles is a certificate and key pair read from files, read again at
// a handshake after either changed (cert-manager, SPIFFE and Kubernetes
// secrets rotate them in place).
type certFiles struct {
	certPath, keyPath string

	mu                      sync.Mutex
	certVersion, keyVersion os.FileInfo
	cert                    *tls.Certificate
}

func newCertFiles(certPath, keyPath string) (*certFiles, error) {
	cf := &certFiles{certPath: certPath, keyPath: keyPath}
	cv, kv, cert, err := cf.load()
	if err != nil {
		return nil, err
	}
	cf.certVersion, cf.keyVersion, cf.cert = cv, kv, cert
	return cf, nil
}

// get is tls.Config.GetClientCertificate: the current pair, reloaded when
// a file changed. A pair that does not load (caught between the writes
// of the certificate and the key) leaves the last good one in use, and
// the next handshake tries again.
func (cf *certFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cv, errC := os.Stat(cf.certPath)
	kv, errK := os.Stat(cf.keyPath)
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if errC != nil || errK != nil || sameVersion(cf.certVersion, cv) && sameVersion(cf.keyVersion, kv) {
		return cf.cert, nil
	}
	if cv, kv, cert, err := cf.load(); err == nil {
		cf.certVersion, cf.keyVersion, cf.cert = cv, kv, cert
	}
	return cf.cert, nil
}

// load reads and checks the pair; the versions are those of before the
// read, so a change during it is seen next time.
func (cf *certFiles) load() (certVersion, keyVersion os.FileInfo, cert *tls.Certificate, err error) {
	if certVersion, err = os.Stat(cf.certPath); err != nil {
		return nil, nil, nil, fmt.Errorf("tls_client_cert_file: cannot read: %w", err)
	}
	if keyVersion, err = os.Stat(cf.keyPath); err != nil {
		return nil, nil, nil, fmt.Errorf("tls_client_key_file: cannot read: %w", err)
	}
	certPEM, err := readCredentialFile(cf.certPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls_client_cert_file: %w", err)
	}
	keyPEM, err := readCredentialFile(cf.keyPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls_client_key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls names what is wrong (no PEM data, key does not
		// match), never the content.
		return nil, nil, nil, fmt.Errorf("tls_client_cert_file: does not load with tls_client_key_file: %w", err)
	}
	return certVersion, keyVersion, &pair, nil
}

// sameVersion reports whether two stats are of the same unchanged file:
// same inode (a symlink swap or rename makes a new one), size and mtime.
func sameVersion(old, cur os.FileInfo) bool {
	return old != nil && cur != nil && os.SameFile(old, cur) && old.Size() == cur.Size() && old.ModTime().Equal(cur.ModTime())
}

// readCredentialFile reads a small file, refusing one larger than
// maxCredentialFile.
func readCredentialFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if len(data) > maxCredentialFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCredentialFile)
	}
	return data, nil
}
