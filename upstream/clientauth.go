package upstream

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

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
