package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TokenError is an error answer of the token endpoint (RFC 6749 §5.2), or an
// answer that was not one (Code empty, StatusCode set).
type TokenError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the "error" parameter, e.g. "invalid_grant".
	Code string
	// Description is the "error_description" parameter, as sent.
	Description string
}

// Error describes the failure; it never contains a token or the secret.
func (e *TokenError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("token endpoint answered status %d", e.StatusCode)
	}
	if e.Description == "" {
		return "token endpoint: " + e.Code
	}
	return fmt.Sprintf("token endpoint: %s: %s", e.Code, e.Description)
}

// IsInvalidGrant reports whether err is the token endpoint refusing the grant
// itself (expired or revoked refresh token, used code): the user must log in
// again.
func IsInvalidGrant(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "invalid_grant" && te.StatusCode >= 400 && te.StatusCode < 500
}

// IsRefused reports whether err is a final no to a token request: the
// token endpoint refused it with a 4xx answer (invalid_grant,
// invalid_client, ...), or the tokens it returned failed verification.
// Sending the same request again cannot succeed. Anything that may pass
// by itself is not a refusal: a 5xx answer, 408 or 429, a timeout, an
// unreachable server, a JWKS that could not be fetched, or a 4xx that is
// no OAuth answer (a 404 from a load balancer during a deploy) unless it
// is a bare 400 or 401.
func IsRefused(err error) bool {
	if errors.Is(err, ErrUnavailable) {
		return false
	}
	var te *TokenError
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusBadRequest, te.StatusCode == http.StatusUnauthorized:
			return true
		case te.StatusCode == http.StatusRequestTimeout, te.StatusCode == http.StatusTooManyRequests:
			return false
		default:
			return te.StatusCode >= 400 && te.StatusCode < 500 && te.Code != ""
		}
	}
	return errors.Is(err, ErrInvalidIDToken)
}

// tokenResponse is the successful answer (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	RefreshToken string          `json:"refresh_token"`
	IDToken      string          `json:"id_token"`
	ExpiresIn    json.RawMessage `json:"expires_in"` // number, or a string at some servers
	Scope        string          `json:"scope"`
}

// token posts form to the token endpoint with client authentication and
// decodes the answer.
func (c *Client) token(ctx context.Context, form url.Values) (*Token, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	start := c.now()
	status, body, err := c.postForm(ctx, "token", m.TokenEndpoint, form)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		te := &TokenError{StatusCode: status}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			// Some servers echo what they were sent; the description must
			// not carry it into a log line.
			te.Code = c.redact(e.Error, form, 60)
			te.Description = c.redact(e.Description, form, 200)
		}
		if !protocolStatus(status, te.Code) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, te)
		}
		return nil, te
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, malformed("token endpoint: invalid JSON answer")
	}
	if tr.AccessToken == "" {
		return nil, malformed("token endpoint: answer has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, fmt.Errorf("token endpoint: unsupported token_type %q", c.redact(tr.TokenType, form, 20))
	}
	t := &Token{
		AccessToken:  Secret(tr.AccessToken),
		TokenType:    "Bearer",
		RefreshToken: Secret(tr.RefreshToken),
		IDToken:      Secret(tr.IDToken),
		Scope:        tr.Scope,
		Issued:       start,
	}
	if secs := parseExpiresIn(tr.ExpiresIn); secs > 0 {
		// Count from when the request was sent, the conservative end.
		t.Expiry = start.Add(time.Duration(secs) * time.Second)
	}
	return t, nil
}

// parseExpiresIn accepts a JSON number or a numeric string.
func parseExpiresIn(raw json.RawMessage) int64 {
	s := strings.Trim(string(raw), `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 10*365*24*3600 {
		return 0
	}
	return n
}

// sensitiveParams are the parameters of calls to the authorization server
// that are credentials: grants, client credentials (the client_assertion
// JWT, signed or read from client_assertion_file, is one until it
// expires), and the token of revocation and introspection.
var sensitiveParams = [...]string{"code", "code_verifier", "refresh_token", "password", "client_secret", "client_assertion", "token"}

// redact returns s, at most n bytes of it, with every credential the
// request carried (the form's sensitive parameters, the client assertion
// among them, the client secret, the Basic credential; as sent and
// URL-encoded) replaced by "[redacted]".
// One pass over a bounded prefix: s comes from the server, the code and
// password from the user, so neither may make this slow.
func (c *Client) redact(s string, form url.Values, n int) string {
	if s == "" {
		return s
	}
	var secrets []string
	add := func(v string) {
		for _, e := range [...]string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if e != "" && !slices.Contains(secrets, e) {
				secrets = append(secrets, e)
			}
		}
	}
	for _, k := range sensitiveParams {
		add(form.Get(k))
	}
	if !c.cfg.ClientSecret.IsZero() {
		add(c.cfg.ClientSecret.Reveal())
		if c.cfg.ClientAuth == ClientSecretBasic {
			add(basicCredential(c.cfg.ClientID, c.cfg.ClientSecret))
		}
	}
	// Longest first: it wins where two start alike. One pass over the
	// first n bytes, checking each secret there: bounded work, and no
	// secret is cut in half at the end (one that starts before n is
	// replaced whole).
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	var b strings.Builder
	i := 0
	for i < len(s) && (i < n || !utf8.RuneStart(s[i])) {
		matched := false
		for _, v := range secrets {
			if strings.HasPrefix(s[i:], v) {
				b.WriteString("[redacted]")
				i += len(v)
				matched = true
				break
			}
		}
		if !matched {
			b.WriteByte(s[i])
			i++
		}
	}
	if i < len(s) {
		b.WriteString("…")
	}
	return b.String()
}

// truncate shortens s to at most n bytes, on a UTF-8 character boundary,
// marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// postForm POSTs form to endpoint, a URL of the authorization server (name
// says which, for the Observer), with
// this client's authentication, and returns the status and the
// size-limited body. The credentials are added to form, so that redact
// finds them there.
func (c *Client) postForm(ctx context.Context, name, endpoint string, form url.Values) (int, []byte, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	header := http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"},
		"Accept":       {"application/json"},
	}
	if err := c.auth.authenticate(form, header, authCall{tokenEndpoint: m.TokenEndpoint, now: c.now()}); err != nil {
		return 0, nil, fmt.Errorf("client authentication: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header = header
	status, body, err := c.do(name, form.Get("grant_type"), req)
	if err != nil {
		return 0, nil, unreachable(err)
	}
	return status, body, nil
}
