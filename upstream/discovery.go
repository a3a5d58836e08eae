package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Metadata is the subset of authorization server metadata (OpenID Connect
// Discovery §3, RFC 8414 §2) the gateway uses.
type Metadata struct {
	// Issuer is the server's issuer identifier; it must equal the
	// configured one exactly.
	Issuer string `json:"issuer"`
	// AuthorizationEndpoint is where browsers are sent to log in.
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	// TokenEndpoint redeems codes and refresh tokens.
	TokenEndpoint string `json:"token_endpoint"`
	// JWKSURI publishes the keys that sign ID tokens. Empty: none
	// published, so ID tokens cannot be verified.
	JWKSURI string `json:"jwks_uri"`
	// UserinfoEndpoint returns claims about the user. Empty: not called.
	UserinfoEndpoint string `json:"userinfo_endpoint"`
	// EndSessionEndpoint is RP-initiated logout. Empty: sign-out ends only
	// the gateway's session.
	EndSessionEndpoint string `json:"end_session_endpoint"`
	// RevocationEndpoint is RFC 7009 token revocation. Empty: refresh
	// tokens are not revoked at sign-out.
	RevocationEndpoint string `json:"revocation_endpoint"`
	// IntrospectionEndpoint is RFC 7662 token introspection. Empty: opaque
	// caller tokens cannot be validated.
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	// CodeChallengeMethodsSupported lists the PKCE methods; S256 is sent
	// whatever it says.
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
	// ResponseModesSupported lists the response modes (form_post lets the
	// implicit grant deliver its tokens by POST). Empty: query and fragment.
	ResponseModesSupported []string `json:"response_modes_supported"`
	// AuthorizationResponseIssParamSupported makes the "iss" parameter of
	// the authorization response required (RFC 9207 §3).
	AuthorizationResponseIssParamSupported bool `json:"authorization_response_iss_parameter_supported"`
}

// discoveryRetry is how long a failed discovery is remembered before the
// next request may try again, so a down server is not hammered.
const discoveryRetry = 2 * time.Second

// Metadata returns the server's metadata: discovered once and cached, with
// every endpoint set in Config taking precedence.
func (c *Client) Metadata(ctx context.Context) (*Metadata, error) {
	srv := c.srv
	srv.metaMu.Lock()
	m, failed, ferr := srv.meta, srv.metaFailed, srv.metaErr
	srv.metaMu.Unlock()
	if m != nil {
		return m, nil
	}
	if ferr != nil && c.now().Sub(failed) < discoveryRetry {
		return nil, ferr
	}
	v, err, _ := srv.metaFlights.Do("meta", func() (any, error) {
		// Detach from the first caller's cancellation: the result is shared.
		ctx := context.WithoutCancel(ctx)
		m, err := c.discover(ctx)
		srv.metaMu.Lock()
		defer srv.metaMu.Unlock()
		if err != nil {
			srv.metaFailed, srv.metaErr = c.now(), err
			return nil, err
		}
		srv.meta, srv.metaErr = m, nil
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Metadata), nil
}

// discover fetches metadata from the issuer, or builds it from Config alone
// when no issuer is set.
func (c *Client) discover(ctx context.Context) (*Metadata, error) {
	m := &Metadata{}
	if c.cfg.Issuer != "" {
		var err error
		if m, err = c.fetchMetadata(ctx); err != nil {
			return nil, err
		}
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&m.AuthorizationEndpoint, c.cfg.AuthorizationEndpoint)
	override(&m.TokenEndpoint, c.cfg.TokenEndpoint)
	override(&m.JWKSURI, c.cfg.JWKSURI)
	override(&m.UserinfoEndpoint, c.cfg.UserinfoEndpoint)
	override(&m.EndSessionEndpoint, c.cfg.EndSessionEndpoint)
	override(&m.RevocationEndpoint, c.cfg.RevocationEndpoint)
	override(&m.IntrospectionEndpoint, c.cfg.IntrospectionEndpoint)
	m.Issuer = c.cfg.Issuer
	if m.AuthorizationEndpoint == "" || m.TokenEndpoint == "" {
		return nil, errors.New("discovery: authorization_endpoint or token_endpoint missing")
	}
	for _, e := range []string{m.AuthorizationEndpoint, m.TokenEndpoint, m.JWKSURI, m.UserinfoEndpoint, m.EndSessionEndpoint, m.RevocationEndpoint, m.IntrospectionEndpoint} {
		if e == "" {
			continue
		}
		if err := checkEndpoint(e, c.cfg.AllowInsecureHTTP); err != nil {
			return nil, fmt.Errorf("discovery: endpoint %s: %w", redactURL(e), err)
		}
	}
	c.log.Info("authorization server metadata loaded",
		"issuer", m.Issuer, "authorization_endpoint", m.AuthorizationEndpoint, "token_endpoint", m.TokenEndpoint)
	switch {
	case m.RevocationEndpoint == "" && m.EndSessionEndpoint == "":
		c.log.Info("the authorization server has no revocation_endpoint and no end_session_endpoint: " +
			"a sign-out ends the gateway's session only, the server's tokens stay valid until they expire and its login session stays open")
	case m.RevocationEndpoint == "":
		c.log.Info("the authorization server has no revocation_endpoint: a sign-out cannot revoke the refresh token, which stays valid until it expires")
	case m.EndSessionEndpoint == "":
		c.log.Info("the authorization server has no end_session_endpoint: a sign-out ends the gateway's session, not the user's login at the server")
	}
	return m, nil
}

// fetchMetadata tries OpenID Connect Discovery, then RFC 8414 §3.1 (the
// well-known segment inserted before the issuer's path).
func (c *Client) fetchMetadata(ctx context.Context) (*Metadata, error) {
	// OpenID Connect Discovery §4: a trailing "/" goes before appending;
	// the issuer itself is compared exactly, slash and all.
	urls := []string{strings.TrimSuffix(c.cfg.Issuer, "/") + "/.well-known/openid-configuration"}
	if u, err := url.Parse(c.cfg.Issuer); err == nil {
		u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
		urls = append(urls, u.String())
	}
	var firstErr error
	for _, u := range urls {
		body, err := c.get(ctx, "discovery", u, "application/json", "")
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if errors.Is(err, ErrUnavailable) {
				break // the server is down; the other URL will not help
			}
			continue
		}
		var m Metadata
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("discovery: %s: invalid JSON: %w", u, err)
		}
		// OpenID Connect Discovery §4.3, RFC 8414 §3.3: an impersonation
		// defence.
		if m.Issuer != c.cfg.Issuer {
			return nil, fmt.Errorf("discovery: issuer %q in metadata does not match configured issuer %q (they must be equal, a trailing slash included)", m.Issuer, c.cfg.Issuer)
		}
		return &m, nil
	}
	return nil, fmt.Errorf("discovery at %s: %w", c.cfg.Issuer, firstErr)
}

// Discover loads the metadata now, retrying with back-off until ctx ends and
// logging each failure, so start-up shows progress while the server comes up.
func (c *Client) Discover(ctx context.Context) error {
	delay := 500 * time.Millisecond
	for {
		_, err := c.Metadata(ctx)
		if err == nil {
			return nil
		}
		c.log.Warn("authorization server not ready, retrying", "issuer", c.cfg.Issuer, "retry_in", delay.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// redactURL drops the query and user info of a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
