package upstream_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Keys are slow to make; each kind is made once per test binary.
var (
	keysOnce            sync.Once
	rsaKey, otherRSAKey *rsa.PrivateKey
	ecKey, clusterKey   *ecdsa.PrivateKey
)

func testKeys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		otherRSAKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		clusterKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	if rsaKey == nil || otherRSAKey == nil || ecKey == nil || clusterKey == nil {
		t.Fatal("could not generate test keys")
	}
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pkcs8PEM is key as a PEM "PRIVATE KEY".
func pkcs8PEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// jwkThumbprint computes the RFC 7638 thumbprint independently of the
// code under test: encoding/json sorts map keys and adds no spaces.
func jwkThumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	enc := base64.RawURLEncoding
	var m map[string]string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m = map[string]string{"kty": "RSA", "n": enc.EncodeToString(k.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		x, y := make([]byte, 32), make([]byte, 32)
		pt, _ := k.Bytes()
		copy(x, pt[1:33])
		copy(y, pt[33:])
		m = map[string]string{"kty": "EC", "crv": "P-256", "x": enc.EncodeToString(x), "y": enc.EncodeToString(y)}
	}
	doc, _ := json.Marshal(m)
	sum := sha256.Sum256(doc)
	return enc.EncodeToString(sum[:])
}

// clusterToken is a Kubernetes-style service-account token signed by
// clusterKey, for workload identity federation.
func clusterToken(t *testing.T, jti string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": k8sIssuer, "sub": k8sSubject, "aud": k8sAudience, "jti": jti,
		"iat": time.Now().Unix(), "exp": exp.Unix(),
	}).SignedString(clusterKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	k8sIssuer   = "https://kubernetes.default.svc.cluster.local"
	k8sSubject  = "system:serviceaccount:authgate:gateway"
	k8sAudience = "api://AzureADTokenExchange"
)

// federated registers clientID to accept cluster tokens.
func federated() upstreamtest.Client {
	return upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &clusterKey.PublicKey,
		AssertionIssuer: k8sIssuer, AssertionSubject: k8sSubject, AssertionAudience: k8sAudience}
}

// TestClientAuthEveryCall runs every call that authenticates the client
// (code exchange, refresh, introspection, client credentials, revocation)
// with each method against a server that accepts only that method.
func TestClientAuthEveryCall(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	rsaFile := writeFile(t, dir, "rsa.pem", pkcs8PEM(t, rsaKey))
	ecFile := writeFile(t, dir, "ec.pem", pkcs8PEM(t, ecKey))
	token := clusterToken(t, "k8s-1", time.Now().Add(time.Hour))
	tokenFile := writeFile(t, dir, "token", []byte(token+"\n"))
	cert := upstreamtest.NewClientCertificate("gateway")
	certFile := writeFile(t, dir, "cert.pem", cert.CertPEM)
	certKeyFile := writeFile(t, dir, "cert-key.pem", cert.KeyPEM)

	tests := []struct {
		name   string
		client upstreamtest.Client
		cfg    func(*upstream.Config)
		tls    bool
		public bool
		// check looks at the body and header of each recorded POST.
		check func(t *testing.T, srv *upstreamtest.Server, form url.Values, h http.Header)
	}{
		{name: "client_secret_basic", client: upstreamtest.Client{ID: clientID, Secret: clientSecret, AuthMethod: upstreamtest.ClientSecretBasic},
			cfg: func(c *upstream.Config) { c.ClientAuth = upstream.ClientSecretBasic },
			check: func(t *testing.T, _ *upstreamtest.Server, form url.Values, h http.Header) {
				if u, p, ok := (&http.Request{Header: h}).BasicAuth(); !ok || u != clientID || p != clientSecret || form.Has("client_secret") {
					t.Errorf("got Basic %q:%q %v, client_secret in body %v; want Basic only", u, p, ok, form.Has("client_secret"))
				}
			}},
		{name: "client_secret_post", client: upstreamtest.Client{ID: clientID, Secret: clientSecret, AuthMethod: upstreamtest.ClientSecretPost},
			cfg: func(c *upstream.Config) { c.ClientAuth = upstream.ClientSecretPost },
			check: func(t *testing.T, _ *upstreamtest.Server, form url.Values, h http.Header) {
				if h.Get("Authorization") != "" || form.Get("client_id") != clientID || form.Get("client_secret") != clientSecret {
					t.Errorf("got Authorization %v, client_id %q, client_secret set %v; want the form only", h.Get("Authorization") != "", form.Get("client_id"), form.Has("client_secret"))
				}
			}},
		{name: "private_key_jwt RS256", client: upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey},
			cfg: func(c *upstream.Config) {
				c.ClientAuth, c.ClientSecret, c.PrivateKeyFile = upstream.PrivateKeyJWT, "", rsaFile
			},
			check: wantAssertion("RS256", jwkThumbprint(t, &rsaKey.PublicKey), "")},
		{name: "private_key_jwt PS256 with a kid", client: upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey},
			cfg: func(c *upstream.Config) {
				c.ClientAuth, c.ClientSecret, c.PrivateKeyFile, c.PrivateKeyAlgorithm, c.PrivateKeyID = upstream.PrivateKeyJWT, "", rsaFile, "PS256", "key-2026"
			},
			check: wantAssertion("PS256", "key-2026", "")},
		{name: "private_key_jwt ES256, aud the token endpoint", client: upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &ecKey.PublicKey},
			cfg: func(c *upstream.Config) {
				c.ClientAuth, c.ClientSecret, c.PrivateKeyFile, c.ClientAssertionAudience = upstream.PrivateKeyJWT, "", ecFile, upstream.AssertionAudienceTokenEndpoint
			},
			check: wantAssertion("ES256", jwkThumbprint(t, &ecKey.PublicKey), "/token")},
		{name: "private_key_jwt from client_assertion_file", client: federated(),
			cfg: func(c *upstream.Config) {
				c.ClientAuth, c.ClientSecret, c.ClientAssertionFile = upstream.PrivateKeyJWT, "", tokenFile
			},
			check: func(t *testing.T, _ *upstreamtest.Server, form url.Values, h http.Header) {
				if form.Get("client_assertion") != token || form.Get("client_assertion_type") != jwtBearer || form.Get("client_id") != clientID || h.Get("Authorization") != "" {
					t.Errorf("got assertion equal %v, type %q, client_id %q; want the file's token, jwt-bearer, %s", form.Get("client_assertion") == token, form.Get("client_assertion_type"), form.Get("client_id"), clientID)
				}
			}},
		{name: "tls_client_auth", tls: true, client: upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.TLSClientAuth, TLSCertificate: cert.Certificate},
			cfg: func(c *upstream.Config) {
				c.ClientAuth, c.ClientSecret, c.TLSClientCertFile, c.TLSClientKeyFile = upstream.TLSClientAuth, "", certFile, certKeyFile
			}},
		{name: "none", public: true, client: upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.None},
			cfg: func(c *upstream.Config) { c.ClientSecret = "" },
			check: func(t *testing.T, _ *upstreamtest.Server, form url.Values, h http.Header) {
				if h.Get("Authorization") != "" || form.Get("client_id") != clientID || form.Has("client_secret") || form.Has("client_assertion") {
					t.Errorf("got %v with Authorization %v, want client_id alone", form, h.Get("Authorization") != "")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, upstreamtest.Config{TLS: tt.tls, Clients: []upstreamtest.Client{tt.client}})
			cfg := configFor(srv)
			tt.cfg(&cfg)
			var deps upstream.Deps
			var rec *recorder
			if tt.tls {
				// Trusts the server; New adds the client certificate.
				deps.HTTPClient = srv.HTTPClient()
			} else {
				deps.HTTPClient, rec = recordingClient(t)
			}
			c := newClient(t, cfg, deps)
			l := loginWith(t, c, srv.HTTPClient())
			fresh, err := c.Refresh(ctx(t), *l.Token)
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if at, err := c.Introspect(ctx(t), fresh.AccessToken, ""); err != nil || at.Identity.Subject != "user-alice" {
				t.Fatalf("Introspect: got %+v, %v, want user-alice", at, err)
			}
			if !tt.public {
				if _, err := c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{Scopes: []string{"read"}}); err != nil {
					t.Fatalf("ClientCredentials: %v", err)
				}
			}
			if err := c.Revoke(ctx(t), fresh.RefreshToken, "refresh_token"); err != nil || !srv.Revoked(fresh.RefreshToken.Reveal()) {
				t.Fatalf("Revoke: got %v, revoked %v, want nil, true", err, srv.Revoked(fresh.RefreshToken.Reveal()))
			}
			if rec == nil || tt.check == nil {
				return
			}
			posts := 0
			for _, r := range rec.Requests() {
				if r.Method != http.MethodPost {
					continue
				}
				posts++
				form, _ := url.ParseQuery(r.Body)
				tt.check(t, srv, form, r.Header)
			}
			if want := map[bool]int{false: 5, true: 4}[tt.public]; posts != want {
				t.Errorf("got %d POSTs, want %d", posts, want)
			}
		})
	}
}

// loginWith runs a code flow with browser making the browser's request.
func loginWith(t *testing.T, c *upstream.Client, browser *http.Client) *upstream.Login {
	t.Helper()
	r := newAuthRequest()
	u, err := c.AuthCodeURL(ctx(t), r)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: got %d to %q, want a code", resp.StatusCode, resp.Header.Get("Location"))
	}
	l, err := c.Exchange(ctx(t), loc.Query().Get("code"), r)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return l
}

// wantAssertion checks a signed client assertion: alg and kid in the
// header; iss and sub the client, aud the issuer (or the issuer's URL +
// audPath), a fresh jti, exp 60s after iat.
func wantAssertion(alg, kid, audPath string) func(*testing.T, *upstreamtest.Server, url.Values, http.Header) {
	seen := map[string]bool{}
	return func(t *testing.T, srv *upstreamtest.Server, form url.Values, h http.Header) {
		t.Helper()
		if form.Get("client_assertion_type") != jwtBearer || form.Get("client_id") != clientID || h.Get("Authorization") != "" || form.Has("client_secret") {
			t.Errorf("got type %q, client_id %q, Authorization %v, client_secret %v; want jwt-bearer, %s, none, none",
				form.Get("client_assertion_type"), form.Get("client_id"), h.Get("Authorization") != "", form.Has("client_secret"), clientID)
		}
		claims := jwt.MapClaims{}
		tok, _, err := jwt.NewParser().ParseUnverified(form.Get("client_assertion"), claims)
		if err != nil {
			t.Fatalf("client_assertion: %v", err)
		}
		if tok.Header["alg"] != alg || tok.Header["kid"] != kid {
			t.Errorf("header: got alg %v kid %v, want %s %s", tok.Header["alg"], tok.Header["kid"], alg, kid)
		}
		aud := srv.Issuer()
		if audPath != "" {
			aud = srv.URL + audPath
		}
		if claims["iss"] != clientID || claims["sub"] != clientID || claims["aud"] != aud {
			t.Errorf("claims: got iss %v sub %v aud %v, want %s, %s, %s", claims["iss"], claims["sub"], claims["aud"], clientID, clientID, aud)
		}
		iat, _ := claims["iat"].(float64)
		exp, _ := claims["exp"].(float64)
		if exp-iat != 60 {
			t.Errorf("exp - iat: got %v, want 60", exp-iat)
		}
		jti, _ := claims["jti"].(string)
		if len(jti) < 20 || seen[jti] {
			t.Errorf("jti %q: got short or repeated, want a fresh random one", jti)
		}
		seen[jti] = true
	}
}

// wantInvalidClient checks err is the server's final invalid_client.
func wantInvalidClient(t *testing.T, err error) {
	t.Helper()
	var te *upstream.TokenError
	if !errors.As(err, &te) || te.Code != "invalid_client" || te.StatusCode != http.StatusUnauthorized || !upstream.IsRefused(err) {
		t.Errorf("got %v, want a refused 401 invalid_client", err)
	}
}

func TestClientAuthRefused(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	rsaFile := writeFile(t, dir, "rsa.pem", pkcs8PEM(t, rsaKey))
	keyClient := func(string) upstreamtest.Client {
		return upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey}
	}
	withKey := func(c *upstream.Config) {
		c.ClientAuth, c.ClientSecret, c.PrivateKeyFile = upstream.PrivateKeyJWT, "", rsaFile
	}
	// A client-signed assertion in a file is sent again and again; a
	// server that checks jti (RFC 7523 §3) refuses the second use.
	selfSigned := func(issuer string) []byte {
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": clientID, "sub": clientID, "aud": issuer, "jti": "once", "exp": time.Now().Add(time.Minute).Unix(),
		}).SignedString(rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}

	tests := []struct {
		name   string
		client func(issuer string) upstreamtest.Client
		cfg    func(c *upstream.Config)
		clock  func() time.Time
		calls  int // the last one must be refused; default 1
	}{
		{name: "wrong secret", client: func(string) upstreamtest.Client { return upstreamtest.Client{ID: clientID, Secret: "another-secret"} },
			cfg: func(*upstream.Config) {}},
		{name: "post to a basic-only client", client: func(string) upstreamtest.Client {
			return upstreamtest.Client{ID: clientID, Secret: clientSecret, AuthMethod: upstreamtest.ClientSecretBasic}
		}, cfg: func(c *upstream.Config) { c.ClientAuth = upstream.ClientSecretPost }},
		{name: "wrong key", client: func(string) upstreamtest.Client {
			return upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &otherRSAKey.PublicKey}
		}, cfg: withKey},
		{name: "expired assertion (gateway clock 2 minutes slow)", client: keyClient, cfg: withKey,
			clock: func() time.Time { return time.Now().Add(-2 * time.Minute) }},
		{name: "assertion from the future (gateway clock 2 minutes fast)", client: keyClient, cfg: withKey,
			clock: func() time.Time { return time.Now().Add(2 * time.Minute) }},
		{name: "wrong aud", client: func(string) upstreamtest.Client {
			return upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey, AssertionAudience: "https://elsewhere.example"}
		}, cfg: withKey},
		{name: "token endpoint aud where the issuer is required", client: func(issuer string) upstreamtest.Client {
			return upstreamtest.Client{ID: clientID, AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey, AssertionAudience: issuer}
		}, cfg: func(c *upstream.Config) {
			withKey(c)
			c.ClientAssertionAudience = upstream.AssertionAudienceTokenEndpoint
		}},
		{name: "replayed assertion from a file", client: keyClient, calls: 2, cfg: func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret = upstream.PrivateKeyJWT, ""
			c.ClientAssertionFile = writeFile(t, t.TempDir(), "token", selfSigned(c.Issuer))
		}},
		{name: "public client where a confidential one is registered", client: func(string) upstreamtest.Client {
			return upstreamtest.Client{ID: clientID, Secret: clientSecret, AuthMethod: upstreamtest.ClientSecretBasic}
		}, cfg: func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = upstream.ClientAuthNone, "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := newServer(t, upstreamtest.Config{Listener: l, Clients: []upstreamtest.Client{tt.client("http://" + l.Addr().String())}})
			cfg := configFor(srv)
			tt.cfg(&cfg)
			c := newClient(t, cfg, upstream.Deps{Now: tt.clock})
			calls := max(tt.calls, 1)
			for i := range calls {
				_, err = c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{})
				if i < calls-1 && err != nil {
					t.Fatalf("call %d: %v, want success", i+1, err)
				}
			}
			wantInvalidClient(t, err)
		})
	}
}

// TestClientAssertionFileRotation pins that a rotated Kubernetes token is
// sent from the next call on: the path is a symlink into a directory that
// a symlink swap replaces, as the kubelet's atomic writer does.
func TestClientAssertionFileRotation(t *testing.T) {
	testKeys(t)
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{federated()}})
	dir := t.TempDir()
	generation := 0
	// publish writes token into a new timestamped directory and swaps
	// ..data to it; sameStat gives the file the previous one's mtime.
	var lastMtime time.Time
	publish := func(token string, sameStat bool) {
		t.Helper()
		generation++
		gen := "..gen" + string(rune('0'+generation))
		if err := os.Mkdir(filepath.Join(dir, gen), 0o755); err != nil {
			t.Fatal(err)
		}
		p := writeFile(t, filepath.Join(dir, gen), "token", []byte(token))
		if sameStat {
			if err := os.Chtimes(p, lastMtime, lastMtime); err != nil {
				t.Fatal(err)
			}
		}
		fi, _ := os.Stat(p)
		lastMtime = fi.ModTime()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour)
	first, second, third := clusterToken(t, "jti-1", exp), clusterToken(t, "jti-2", exp), clusterToken(t, "jti-3", exp)
	if len(first) != len(third) {
		t.Fatalf("test tokens differ in length: %d, %d", len(first), len(third))
	}
	publish(first, false)
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}

	hc, rec := recordingClient(t)
	cfg := configFor(srv)
	cfg.ClientAuth, cfg.ClientSecret, cfg.ClientAssertionFile = upstream.PrivateKeyJWT, "", filepath.Join(dir, "token")
	c := newClient(t, cfg, upstream.Deps{HTTPClient: hc})
	sent := func() string {
		t.Helper()
		if _, err := c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{}); err != nil {
			t.Fatalf("ClientCredentials: %v", err)
		}
		reqs := rec.Requests()
		form, _ := url.ParseQuery(reqs[len(reqs)-1].Body)
		return form.Get("client_assertion")
	}
	steps := []struct {
		name   string
		before func()
		want   string
	}{
		{"first token", nil, first},
		{"unchanged, sent again", nil, first},
		{"after a symlink swap", func() { publish(second, false) }, second},
		{"after a swap to a file of the same size and mtime", func() { publish(third, true) }, third},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		if got := sent(); got != st.want {
			t.Errorf("%s: got assertion %.20q…, want %.20q…", st.name, got, st.want)
		}
	}

	// A file that disappears fails the call before anything is sent.
	if err := os.Remove(filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}
	before := srv.Count("token")
	_, err := c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{})
	if err == nil || !strings.Contains(err.Error(), "client_assertion_file") || upstream.IsRefused(err) {
		t.Errorf("after removal: got %v, want a client_assertion_file error, not a refusal", err)
	}
	if got := srv.Count("token"); got != before {
		t.Errorf("token requests after removal: got %d, want %d", got-before, 0)
	}
}

func TestClientAuthConfigErrors(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	const canary = "canary-file-content-7f3a"
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaDER := x509.MarshalPKCS1PrivateKey(rsaKey)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	cert := upstreamtest.NewClientCertificate("gateway")
	otherCert := upstreamtest.NewClientCertificate("other")
	files := map[string]string{
		"pkcs8-rsa":   writeFile(t, dir, "pkcs8-rsa.pem", pkcs8PEM(t, rsaKey)),
		"pkcs1-rsa":   writeFile(t, dir, "pkcs1-rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: rsaDER})),
		"sec1-ec":     writeFile(t, dir, "sec1-ec.pem", append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...)),
		"weak":        writeFile(t, dir, "weak.pem", pkcs8PEM(t, weak)),
		"p384":        writeFile(t, dir, "p384.pem", pkcs8PEM(t, p384)),
		"ed25519":     writeFile(t, dir, "ed25519.pem", pkcs8PEM(t, edKey)),
		"encrypted":   writeFile(t, dir, "encrypted.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte(canary)})),
		"corrupt":     writeFile(t, dir, "corrupt.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte(canary)})),
		"text":        writeFile(t, dir, "text", []byte(canary)),
		"empty":       writeFile(t, dir, "empty", []byte(" \n")),
		"assertion":   writeFile(t, dir, "assertion", []byte("a.b.c\n")),
		"cert":        writeFile(t, dir, "cert.pem", cert.CertPEM),
		"cert-key":    writeFile(t, dir, "cert-key.pem", cert.KeyPEM),
		"other-key":   writeFile(t, dir, "other-key.pem", otherCert.KeyPEM),
		"missing":     filepath.Join(dir, "missing"),
		"not-a-cert":  writeFile(t, dir, "not-a-cert.pem", []byte(canary)),
		"large-token": writeFile(t, dir, "large", []byte(strings.Repeat("a", 70<<10)+".b.c")),
	}
	keyJWT := func(file string) func(*upstream.Config) {
		return func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.PrivateKeyFile = upstream.PrivateKeyJWT, "", files[file]
		}
	}
	fileJWT := func(file string) func(*upstream.Config) {
		return func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.ClientAssertionFile = upstream.PrivateKeyJWT, "", files[file]
		}
	}
	mtls := func(cert, key string) func(*upstream.Config) {
		return func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.TLSClientCertFile, c.TLSClientKeyFile = upstream.TLSClientAuth, "", files[cert], files[key]
		}
	}
	and := func(a, b func(*upstream.Config)) func(*upstream.Config) {
		return func(c *upstream.Config) { a(c); b(c) }
	}
	tests := []struct {
		name string
		edit func(*upstream.Config)
		want string // "" means valid; else the start of an error line
	}{
		{"client_secret_basic", func(*upstream.Config) {}, ""},
		{"client_secret_post", func(c *upstream.Config) { c.ClientAuth = upstream.ClientSecretPost }, ""},
		{"none", func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = upstream.ClientAuthNone, "" }, ""},
		{"unset without a secret", func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = "", "" }, ""},
		{"PKCS#8 RSA", keyJWT("pkcs8-rsa"), ""},
		{"PKCS#1 RSA, PS256", and(keyJWT("pkcs1-rsa"), func(c *upstream.Config) { c.PrivateKeyAlgorithm = "PS256" }), ""},
		{"SEC1 EC after EC PARAMETERS", keyJWT("sec1-ec"), ""},
		{"aud token_endpoint without issuer", and(keyJWT("sec1-ec"), func(c *upstream.Config) {
			c.Issuer, c.Scopes = "", []string{"profile"}
			c.AuthorizationEndpoint, c.TokenEndpoint = "https://idp.example.com/a", "https://idp.example.com/t"
		}), ""},
		{"client_assertion_file", fileJWT("assertion"), ""},
		{"tls_client_auth", mtls("cert", "cert-key"), ""},

		{"unknown client_auth", func(c *upstream.Config) { c.ClientAuth = "client_secret_jwt" },
			"client_auth: must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none"},
		{"client_secret_basic without a secret", func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = upstream.ClientSecretBasic, "" }, "client_secret: required"},
		{"client_secret_post without a secret", func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = upstream.ClientSecretPost, "" }, "client_secret: required"},
		{"none with a secret", func(c *upstream.Config) { c.ClientAuth = upstream.ClientAuthNone }, "client_secret: not used"},
		{"private_key_jwt with a secret", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.ClientSecret = "s" }), "client_secret: not used"},
		{"private_key_jwt without a file", func(c *upstream.Config) { c.ClientAuth, c.ClientSecret = upstream.PrivateKeyJWT, "" }, "private_key_file: required"},
		{"both files", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.ClientAssertionFile = files["assertion"] }), "client_assertion_file: cannot be combined"},
		{"key file missing", keyJWT("missing"), "private_key_file: cannot read"},
		{"key file not PEM", keyJWT("text"), "private_key_file: not a PEM private key"},
		{"key file corrupt", keyJWT("corrupt"), "private_key_file: the PRIVATE KEY block does not parse"},
		{"key file encrypted", keyJWT("encrypted"), "private_key_file: the key is encrypted"},
		{"RSA 1024", keyJWT("weak"), "private_key_file: an RSA key of 1024 bits"},
		{"EC P-384", keyJWT("p384"), "private_key_file: an EC key on P-384"},
		{"Ed25519", keyJWT("ed25519"), "private_key_file: only RSA and EC P-256"},
		{"ES256 with an RSA key", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.PrivateKeyAlgorithm = "ES256" }), "private_key_algorithm: ES256 does not fit"},
		{"PS256 with an EC key", and(keyJWT("sec1-ec"), func(c *upstream.Config) { c.PrivateKeyAlgorithm = "PS256" }), "private_key_algorithm: PS256 does not fit"},
		{"HS256", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.PrivateKeyAlgorithm = "HS256" }), "private_key_algorithm: must be"},
		{"unknown audience", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.ClientAssertionAudience = "both" }), "client_assertion_audience: must be"},
		{"aud issuer without issuer", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) {
			c.Issuer, c.Scopes, c.ClientAssertionAudience = "", []string{"profile"}, upstream.AssertionAudienceIssuer
			c.AuthorizationEndpoint, c.TokenEndpoint = "https://idp.example.com/a", "https://idp.example.com/t"
		}), "client_assertion_audience: \"issuer\" needs issuer"},
		{"private_key_id with an assertion file", and(fileJWT("assertion"), func(c *upstream.Config) { c.PrivateKeyID = "k" }), "private_key_id: only used with private_key_file"},
		{"assertion file missing", fileJWT("missing"), "client_assertion_file: cannot read"},
		{"assertion file empty", fileJWT("empty"), "client_assertion_file: is empty"},
		{"assertion file not a JWT", fileJWT("text"), "client_assertion_file: does not hold a JWT"},
		{"assertion file too large", fileJWT("large-token"), "client_assertion_file: larger than"},
		{"tls without a certificate", func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.TLSClientKeyFile = upstream.TLSClientAuth, "", files["cert-key"]
		}, "tls_client_cert_file: required"},
		{"tls without a key", func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.TLSClientCertFile = upstream.TLSClientAuth, "", files["cert"]
		}, "tls_client_key_file: required"},
		{"tls key of another certificate", mtls("cert", "other-key"), "tls_client_cert_file: does not load with tls_client_key_file"},
		{"tls certificate not PEM", mtls("not-a-cert", "cert-key"), "tls_client_cert_file: does not load"},
		{"tls key missing", mtls("cert", "missing"), "tls_client_key_file: cannot read"},
		{"key file with client_secret_basic", func(c *upstream.Config) { c.PrivateKeyFile = files["pkcs8-rsa"] }, "private_key_file: only used with client_auth private_key_jwt"},
		{"assertion file with client_secret_post", func(c *upstream.Config) {
			c.ClientAuth, c.ClientAssertionFile = upstream.ClientSecretPost, files["assertion"]
		}, "client_assertion_file: only used with client_auth private_key_jwt"},
		{"certificate with none", func(c *upstream.Config) {
			c.ClientAuth, c.ClientSecret, c.TLSClientCertFile = upstream.ClientAuthNone, "", files["cert"]
		}, "tls_client_cert_file: only used with client_auth tls_client_auth"},
		{"certificate with private_key_jwt", and(keyJWT("pkcs8-rsa"), func(c *upstream.Config) { c.TLSClientKeyFile = files["cert-key"] }), "tls_client_key_file: only used with client_auth tls_client_auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := upstream.Config{Issuer: "https://idp.example.com", ClientID: "gw", ClientSecret: secretCanary}
			tt.edit(&cfg)
			cfg.SetDefaults()
			err := cfg.Validate()
			_, newErr := upstream.New(cfg, upstream.Deps{HTTPClient: noNetwork(t)})
			if tt.want == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate: %v; New: %v; want both nil", err, newErr)
				}
				return
			}
			if err == nil || newErr == nil {
				t.Fatalf("Validate: %v; New: %v; want both to fail with %q", err, newErr, tt.want)
			}
			found := false
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !startsWithKey(line) {
					t.Errorf("error line %q does not start with a configuration key", line)
				}
				found = found || strings.HasPrefix(line, tt.want)
			}
			if !found {
				t.Errorf("Validate: got %q, want a line starting with %q", err, tt.want)
			}
			for _, leak := range []string{canary, secretCanary, "BEGIN", "a.b.c"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q shows file content or the secret (%q)", err, leak)
				}
			}
		})
	}
}

// TestClientAssertionEchoRedacted pins SECURITY.md 32 for client
// assertions: a token endpoint that echoes the request must not put the
// assertion (a replayable credential, for a file's for an hour) in an
// error that reaches a log.
func TestClientAssertionEchoRedacted(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "key.pem", pkcs8PEM(t, ecKey))
	fileToken := clusterToken(t, "echoed", time.Now().Add(time.Hour))
	tokenFile := writeFile(t, dir, "token", []byte(fileToken))
	for _, tt := range []struct {
		name string
		edit func(*upstream.Config)
	}{
		{"signed", func(c *upstream.Config) { c.PrivateKeyFile = keyFile }},
		{"from a file", func(c *upstream.Config) { c.ClientAssertionFile = tokenFile }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assertions := make(chan string, 2)
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				a := r.PostForm.Get("client_assertion")
				assertions <- a
				reply(http.StatusUnauthorized, `{"error":"invalid_client","error_description":"bad assertion `+a+` (`+url.QueryEscape(a)+`)"}`)(w, r)
			})
			cfg := upstream.Config{ClientID: clientID, ClientAuth: upstream.PrivateKeyJWT, Scopes: []string{"profile"},
				AuthorizationEndpoint: f.URL + "/authorize", TokenEndpoint: f.URL + "/token", Timeout: time.Second}
			tt.edit(&cfg)
			c := newClient(t, cfg, upstream.Deps{})
			_, err := c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{})
			a := <-assertions
			if strings.Count(a, ".") != 2 {
				t.Fatalf("the server got assertion %q, want a JWT", a)
			}
			wantInvalidClient(t, err)
			sig := a[strings.LastIndex(a, ".")+1:]
			if strings.Contains(err.Error(), sig) || !strings.Contains(err.Error(), "[redacted]") {
				t.Errorf("error %q: want the assertion replaced by [redacted]", err)
			}
		})
	}
}

// TestIntrospectionEchoRedacted pins that the token asked about is
// redacted from an introspection error like any credential.
func TestIntrospectionEchoRedacted(t *testing.T) {
	const caller = "canary-caller-token-91ab"
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		reply(http.StatusBadRequest, `{"error":"`+r.PostForm.Get("token")+`"}`)(w, r)
	})
	c := newClient(t, upstream.Config{ClientID: clientID, ClientSecret: clientSecret, Scopes: []string{"profile"},
		AuthorizationEndpoint: f.URL + "/a", TokenEndpoint: f.URL + "/t", IntrospectionEndpoint: f.URL + "/i", Timeout: time.Second}, upstream.Deps{})
	_, err := c.Introspect(ctx(t), caller, "")
	if err == nil || strings.Contains(err.Error(), caller) {
		t.Errorf("Introspect: got %v, want an error without the token", err)
	}
}

func TestTLSClientAuthTransport(t *testing.T) {
	dir := t.TempDir()
	cert := upstreamtest.NewClientCertificate("gateway")
	cfg := upstream.Config{Issuer: "https://idp.example.com", ClientID: "gw", ClientAuth: upstream.TLSClientAuth,
		TLSClientCertFile: writeFile(t, dir, "cert.pem", cert.CertPEM), TLSClientKeyFile: writeFile(t, dir, "key.pem", cert.KeyPEM)}
	// New builds its own client when given none; the certificate is then
	// the only difference from the default.
	if _, err := upstream.New(cfg, upstream.Deps{}); err != nil {
		t.Fatalf("New without an HTTPClient: %v", err)
	}
	// A caller's client is not modified: New works on a copy.
	own := &http.Client{Transport: &http.Transport{}}
	if _, err := upstream.New(cfg, upstream.Deps{HTTPClient: own}); err != nil {
		t.Fatalf("New: %v", err)
	}
	// (Clone sets the original's HTTP/2 defaults, as its first use would.)
	if tc := own.Transport.(*http.Transport).TLSClientConfig; tc != nil && (len(tc.Certificates) > 0 || tc.GetClientCertificate != nil) {
		t.Errorf("the caller's transport got a client certificate, want it untouched")
	}
}
