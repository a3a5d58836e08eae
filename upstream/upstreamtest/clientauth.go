package upstreamtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtBearer is the client_assertion_type of RFC 7523 §2.2.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLifetime is the longest a client's own assertion may be
// valid for; RFC 7523 §3 lets the server refuse an exp unreasonably far
// ahead.
const maxAssertionLifetime = 5 * time.Minute

// assertionAlgorithms are the JWS algorithms accepted for assertions:
// asymmetric only, so that a public key can never be an HMAC secret.
var assertionAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// checkClients panics on a client registration that cannot work, so that
// a test's mistake shows at NewServer rather than as a 401.
func checkClients(clients []Client, tlsOn bool) {
	for _, c := range clients {
		fail := func(msg string) { panic(fmt.Sprintf("upstreamtest: client %q: %s", c.ID, msg)) }
		switch c.AuthMethod {
		case "", None:
		case ClientSecretBasic, ClientSecretPost:
			if c.Secret == "" {
				fail(c.AuthMethod + " needs a Secret")
			}
		case PrivateKeyJWT:
			if c.PublicKey == nil {
				fail("private_key_jwt needs a PublicKey")
			}
			if c.AssertionIssuer != "" && c.AssertionSubject == "" {
				fail("AssertionIssuer needs an AssertionSubject")
			}
		case TLSClientAuth:
			if c.TLSCertificate == nil {
				fail("tls_client_auth needs a TLSCertificate")
			}
			if !tlsOn {
				fail("tls_client_auth needs Config.TLS")
			}
		default:
			fail("unknown AuthMethod " + c.AuthMethod)
		}
	}
}

// authenticateRequest authenticates the client of a token, revocation or
// introspection request by the one method the client is registered for.
func (s *Server) authenticateRequest(r *http.Request) (Client, *tokenError) {
	unauthorized := &tokenError{status: http.StatusUnauthorized, code: "invalid_client", description: "client authentication failed"}
	form := r.PostForm
	basic := r.Header.Get("Authorization") != ""
	post := form.Has("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	// RFC 6749 §2.3: one authentication method per request.
	if basic && post || basic && assertion || post && assertion {
		return Client{}, badRequest("invalid_request", "more than one client authentication method")
	}
	id, secret := form.Get("client_id"), form.Get("client_secret")
	used := None
	switch {
	case basic:
		used = ClientSecretBasic
		user, pass, ok := r.BasicAuth()
		if !ok {
			return Client{}, unauthorized
		}
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return Client{}, unauthorized
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return Client{}, unauthorized
		}
	case post:
		used = ClientSecretPost
	case assertion:
		used = PrivateKeyJWT
		if id == "" {
			// RFC 7523 §3: client_id is optional; the assertion's sub
			// names the client.
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(form.Get("client_assertion"), claims); err == nil {
				id, _ = claims["sub"].(string)
			}
		}
	}
	c, ok := s.client(id)
	if !ok {
		return Client{}, unauthorized
	}
	switch c.AuthMethod {
	case "":
		ok = (used == ClientSecretBasic || used == ClientSecretPost || used == None) && secretEqual(c.Secret, secret)
	case ClientSecretBasic, ClientSecretPost:
		ok = used == c.AuthMethod && secretEqual(c.Secret, secret)
	case None:
		ok = used == None
	case PrivateKeyJWT:
		ok = used == PrivateKeyJWT && s.verifyAssertion(c, form)
	case TLSClientAuth:
		ok = used == None && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 &&
			bytes.Equal(r.TLS.PeerCertificates[0].Raw, c.TLSCertificate.Raw)
	}
	if !ok {
		return Client{}, unauthorized
	}
	return c, nil
}

// verifyAssertion checks a private_key_jwt client assertion (RFC 7523 §3)
// and records its jti.
func (s *Server) verifyAssertion(c Client, form url.Values) bool {
	raw := form.Get("client_assertion")
	if form.Get("client_assertion_type") != jwtBearer || raw == "" || len(raw) > maxTokenBytes {
		return false
	}
	now := s.now()
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return c.PublicKey, nil },
		jwt.WithValidMethods(assertionAlgorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return false
	}
	federated := c.AssertionIssuer != ""
	wantIss, wantSub := c.ID, c.ID
	if federated {
		wantIss, wantSub = c.AssertionIssuer, c.AssertionSubject
	}
	iss, _ := claims.GetIssuer()
	sub, _ := claims.GetSubject()
	if iss != wantIss || sub != wantSub {
		return false
	}
	accepted := []string{s.URL, s.URL + "/token"}
	if c.AssertionAudience != "" {
		accepted = []string{c.AssertionAudience}
	}
	aud, _ := claims.GetAudience()
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(accepted, a) }) {
		return false
	}
	if federated {
		return true
	}
	exp, _ := claims.GetExpirationTime()
	jti, _ := claims["jti"].(string)
	if exp.After(now.Add(maxAssertionLifetime)) || jti == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, until := range s.usedAssertions {
		if now.After(until) {
			delete(s.usedAssertions, k)
		}
	}
	key := c.ID + "\x00" + jti
	if _, seen := s.usedAssertions[key]; seen {
		return false // replayed (RFC 7523 §3 item 7)
	}
	s.usedAssertions[key] = exp.Time
	return true
}

// ClientCertificate is a self-signed certificate for tls_client_auth
// tests, with its key, parsed and in PEM.
type ClientCertificate struct {
	// Certificate is the parsed certificate, for Client.TLSCertificate.
	Certificate *x509.Certificate
	// CertPEM is the certificate as a PEM "CERTIFICATE" block.
	CertPEM []byte
	// KeyPEM is the EC P-256 private key as a PEM "PRIVATE KEY"
	// (PKCS#8) block.
	KeyPEM []byte
}

// NewClientCertificate returns a new self-signed client certificate for
// commonName, valid from an hour ago for a day. It panics if it cannot
// generate one, as NewServer does.
func NewClientCertificate(commonName string) *ClientCertificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("upstreamtest: generate client key: " + err.Error())
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("upstreamtest: " + err.Error())
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic("upstreamtest: create client certificate: " + err.Error())
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic("upstreamtest: " + err.Error())
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic("upstreamtest: " + err.Error())
	}
	return &ClientCertificate{
		Certificate: cert,
		CertPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
}
