package interop_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgate/authgate/interop/oidcprovider"
)

// TestCheckOnlineOIDCProvider: `authgate check -online` against a server
// that is not ours. The code-flow probe rests on the server authenticating
// the client before it looks at the code (RFC 6749 §5.2): oidc-provider
// answers the made-up code with invalid_grant for the registered secret
// and invalid_client for a wrong one; a client_credentials route's token
// request is made as the gateway makes it.
func TestCheckOnlineOIDCProvider(t *testing.T) {
	const publicURL = "http://127.0.0.1:4180"
	op := machineOP(t, oidcprovider.DefaultClient(publicURL+"/oauth2/callback"), serviceClient("orders-svc", "orders-secret"))
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	cfg := fmt.Sprintf(`public_url: %q
upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
session:
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - match: { path_prefix: "/orders/" }
    backend: "http://127.0.0.1:1"
    grant: client_credentials
    client_id: orders-svc
    client_secret: orders-secret
    scopes: [orders.read]
    resource: %q
  - backend: "http://127.0.0.1:1"
    grant: authorization_code
`, publicURL, op.URL, ordersAPI)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(clientSecret string) (int, string) {
		cmd := exec.Command(authgateBin, "check", "-online", "-config", path)
		cmd.Env = append(os.Environ(), "COOKIE_SECRET="+cookieSecret, "CLIENT_SECRET="+clientSecret)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	}
	code, out := check("authgate-secret")
	for _, want := range []string{
		"ok       discovery: " + op.URL + ": metadata loaded, its issuer matches",
		"ok       jwks: ",
		`ok       client "authgate", authorization_code (routes[1]): the token endpoint accepted the client's authentication`,
		`ok       client "orders-svc", client_credentials (routes[0]): a token was issued`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, out)
	}
	code, out = check("not-the-secret")
	if want := `FAILED   client "authgate", authorization_code (routes[1]): the token endpoint refused the client's authentication (token endpoint: invalid_client`; !strings.Contains(out, want) || code != 1 {
		t.Errorf("wrong secret: exit %d, output lacks %q:\n%s", code, want, out)
	}
	for _, secret := range []string{"not-the-secret", "orders-secret", "authgate-secret", cookieSecret, "eyJ"} {
		if strings.Contains(out, secret) {
			t.Errorf("the output holds %q", secret)
		}
	}
}
