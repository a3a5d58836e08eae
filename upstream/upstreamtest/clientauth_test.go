package upstreamtest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// send posts form to target with hc and decodes the token response.
func send(t *testing.T, hc *http.Client, target string, form url.Values, header http.Header) tokenResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var res tokenResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	res.Status, res.header = resp.StatusCode, resp.Header
	return res
}

// basicHeader is an Authorization header for client_secret_basic.
func basicHeader(id, secret string) http.Header {
	req, _ := http.NewRequest(http.MethodPost, "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return http.Header{"Authorization": {req.Header.Get("Authorization")}}
}

// assertion signs claims with key (RS256 for RSA, ES256 for EC).
func assertion(t *testing.T, key crypto.Signer, claims jwt.MapClaims) string {
	t.Helper()
	var m jwt.SigningMethod = jwt.SigningMethodRS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		m = jwt.SigningMethodES256
	}
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertionClaims are valid claims for client id at srv, made at now.
func assertionClaims(srv *upstreamtest.Server, id string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"iss": id, "sub": id, "aud": srv.Issuer(), "jti": rand.Text(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
}

func TestClientAuthMethods(t *testing.T) {
	clk := newClock()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const k8sIssuer, k8sSubject, k8sAudience = "https://kubernetes.default.svc", "system:serviceaccount:authgate:gateway", "api://AzureADTokenExchange"
	srv := newServer(t, upstreamtest.Config{Now: clk.Now, Clients: []upstreamtest.Client{
		{ID: "legacy", Secret: "legacy-secret"},
		{ID: "basic", Secret: "basic-secret", AuthMethod: upstreamtest.ClientSecretBasic},
		{ID: "post", Secret: "post-secret", AuthMethod: upstreamtest.ClientSecretPost},
		{ID: "public", AuthMethod: upstreamtest.None},
		{ID: "rsa", AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &rsaKey.PublicKey},
		{ID: "ec", AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &ecKey.PublicKey},
		{ID: "federated", AuthMethod: upstreamtest.PrivateKeyJWT, PublicKey: &ecKey.PublicKey,
			AssertionIssuer: k8sIssuer, AssertionSubject: k8sSubject, AssertionAudience: k8sAudience},
	}})
	now := clk.Now()
	claims := func(id string, edit func(jwt.MapClaims)) jwt.MapClaims {
		c := assertionClaims(srv, id, now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	withAssertion := func(id, a string) url.Values {
		f := url.Values{"client_assertion_type": {jwtBearer}, "client_assertion": {a}}
		if id != "" {
			f.Set("client_id", id)
		}
		return f
	}
	replayed := assertion(t, ecKey, claims("ec", nil))
	k8sToken := assertion(t, ecKey, jwt.MapClaims{"iss": k8sIssuer, "sub": k8sSubject, "aud": k8sAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "k8s-1"})
	tests := []struct {
		name   string
		form   url.Values
		header http.Header
		status int
		error  string
	}{
		{name: "legacy basic", header: basicHeader("legacy", "legacy-secret"), status: 200},
		{name: "legacy post", form: url.Values{"client_id": {"legacy"}, "client_secret": {"legacy-secret"}}, status: 200},
		{name: "basic", header: basicHeader("basic", "basic-secret"), status: 200},
		{name: "basic client posting its secret", form: url.Values{"client_id": {"basic"}, "client_secret": {"basic-secret"}}, status: 401, error: "invalid_client"},
		{name: "basic, wrong secret", header: basicHeader("basic", "wrong"), status: 401, error: "invalid_client"},
		{name: "post", form: url.Values{"client_id": {"post"}, "client_secret": {"post-secret"}}, status: 200},
		{name: "post client using Basic", header: basicHeader("post", "post-secret"), status: 401, error: "invalid_client"},
		{name: "public client, client_id alone", form: url.Values{"client_id": {"public"}}, status: 400, error: "unauthorized_client"},
		{name: "public client sending a secret", form: url.Values{"client_id": {"public"}, "client_secret": {"x"}}, status: 401, error: "invalid_client"},
		{name: "RS256 assertion", form: withAssertion("rsa", assertion(t, rsaKey, claims("rsa", nil))), status: 200},
		{name: "ES256 assertion", form: withAssertion("ec", assertion(t, ecKey, claims("ec", nil))), status: 200},
		{name: "assertion without client_id", form: withAssertion("", assertion(t, ecKey, claims("ec", nil))), status: 200},
		{name: "aud the token endpoint", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["aud"] = srv.URL + "/token" }))), status: 200},
		{name: "aud a list holding the issuer", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["aud"] = []string{"x", srv.URL} }))), status: 200},
		{name: "first use", form: withAssertion("ec", replayed), status: 200},
		{name: "replayed jti", form: withAssertion("ec", replayed), status: 401, error: "invalid_client"},
		{name: "wrong key", form: withAssertion("ec", assertion(t, otherKey, claims("ec", nil))), status: 401, error: "invalid_client"},
		{name: "RSA key for an EC client", form: withAssertion("ec", assertion(t, rsaKey, claims("ec", nil))), status: 401, error: "invalid_client"},
		{name: "expired", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }))), status: 401, error: "invalid_client"},
		{name: "no exp", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { delete(c, "exp") }))), status: 401, error: "invalid_client"},
		{name: "exp ten minutes ahead", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["exp"] = now.Add(10 * time.Minute).Unix() }))), status: 401, error: "invalid_client"},
		{name: "no jti", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { delete(c, "jti") }))), status: 401, error: "invalid_client"},
		{name: "wrong aud", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["aud"] = "https://other.example" }))), status: 401, error: "invalid_client"},
		{name: "iss another client", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["iss"] = "rsa" }))), status: 401, error: "invalid_client"},
		{name: "sub another client", form: withAssertion("ec", assertion(t, ecKey, claims("ec", func(c jwt.MapClaims) { c["sub"] = "rsa" }))), status: 401, error: "invalid_client"},
		{name: "wrong assertion type", form: url.Values{"client_id": {"ec"}, "client_assertion_type": {"urn:x"}, "client_assertion": {assertion(t, ecKey, claims("ec", nil))}}, status: 401, error: "invalid_client"},
		{name: "alg none", form: withAssertion("ec", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("ec", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}()), status: 401, error: "invalid_client"},
		{name: "assertion for a secret client", form: withAssertion("basic", assertion(t, ecKey, claims("basic", nil))), status: 401, error: "invalid_client"},
		{name: "assertion and Basic at once", form: withAssertion("ec", assertion(t, ecKey, claims("ec", nil))), header: basicHeader("basic", "basic-secret"), status: 400, error: "invalid_request"},
		{name: "federated", form: withAssertion("federated", k8sToken), status: 200},
		{name: "federated, the same token again", form: withAssertion("federated", k8sToken), status: 200},
		{name: "federated, wrong sub", form: withAssertion("federated", assertion(t, ecKey, jwt.MapClaims{"iss": k8sIssuer, "sub": "system:serviceaccount:x:y", "aud": k8sAudience, "exp": now.Add(time.Hour).Unix()})), status: 401, error: "invalid_client"},
		{name: "federated, aud the issuer", form: withAssertion("federated", assertion(t, ecKey, jwt.MapClaims{"iss": k8sIssuer, "sub": k8sSubject, "aud": srv.Issuer(), "exp": now.Add(time.Hour).Unix()})), status: 401, error: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := cloneValues(tt.form)
			form.Set("grant_type", "client_credentials")
			res := send(t, httpClient, srv.URL+"/token", form, tt.header)
			if res.Status != tt.status || res.Error != tt.error {
				t.Errorf("got %d %q (%s), want %d %q", res.Status, res.Error, res.ErrorDescription, tt.status, tt.error)
			}
		})
	}
}

func TestTLSClientAuth(t *testing.T) {
	good := upstreamtest.NewClientCertificate("gateway")
	other := upstreamtest.NewClientCertificate("gateway")
	srv := newServer(t, upstreamtest.Config{TLS: true, Clients: []upstreamtest.Client{
		{ID: "mtls", AuthMethod: upstreamtest.TLSClientAuth, TLSCertificate: good.Certificate},
		{ID: clientID, Secret: clientSecret},
	}})
	if !strings.HasPrefix(srv.URL, "https://") || srv.Issuer() != srv.URL {
		t.Fatalf("got URL %q, Issuer %q, want https and equal", srv.URL, srv.Issuer())
	}
	withCert := func(cc *upstreamtest.ClientCertificate) *http.Client {
		hc := srv.HTTPClient()
		pair, err := tls.X509KeyPair(cc.CertPEM, cc.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
		return hc
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"mtls"}}
	tests := []struct {
		name   string
		hc     *http.Client
		form   url.Values
		header http.Header
		status int
	}{
		{"the registered certificate", withCert(good), cc, nil, 200},
		{"another certificate", withCert(other), cc, nil, 401},
		{"no certificate", srv.HTTPClient(), cc, nil, 401},
		{"a secret client over TLS", srv.HTTPClient(), url.Values{"grant_type": {"client_credentials"}}, basicHeader(clientID, clientSecret), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := send(t, tt.hc, srv.URL+"/token", tt.form, tt.header); res.Status != tt.status {
				t.Errorf("got %d %q, want %d", res.Status, res.Error, tt.status)
			}
		})
	}

	resp, err := srv.HTTPClient().Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("discovery over TLS: %v", err)
	}
	var md struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if !strings.Contains(strings.Join(md.Methods, " "), "tls_client_auth") {
		t.Errorf("token_endpoint_auth_methods_supported: got %q, want tls_client_auth with TLS", md.Methods)
	}
	if srv.Certificate() == nil || srv.CertPool() == nil {
		t.Errorf("Certificate, CertPool: got nil with TLS, want the server's")
	}
	plain := newServer(t, upstreamtest.Config{})
	if plain.Certificate() != nil || plain.CertPool() != nil {
		t.Errorf("Certificate, CertPool: got non-nil without TLS, want nil")
	}
}

func TestClientRegistrationChecked(t *testing.T) {
	cert := upstreamtest.NewClientCertificate("x")
	tests := []struct {
		name string
		cfg  upstreamtest.Config
	}{
		{"private_key_jwt without a key", upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "a", AuthMethod: upstreamtest.PrivateKeyJWT}}}},
		{"tls_client_auth without TLS", upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "a", AuthMethod: upstreamtest.TLSClientAuth, TLSCertificate: cert.Certificate}}}},
		{"tls_client_auth without a certificate", upstreamtest.Config{TLS: true, Clients: []upstreamtest.Client{{ID: "a", AuthMethod: upstreamtest.TLSClientAuth}}}},
		{"client_secret_basic without a secret", upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "a", AuthMethod: upstreamtest.ClientSecretBasic}}}},
		{"unknown method", upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "a", AuthMethod: "client_secret_jwt"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewServer: got no panic, want one")
				}
			}()
			upstreamtest.NewServer(tt.cfg).Close()
		})
	}
}
