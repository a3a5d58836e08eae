package upstreamtest

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// codeTTL is the lifetime of an authorization code; RFC 6749 §4.1.2
// recommends at most ten minutes.
const codeTTL = 60 * time.Second

// authCode is an issued authorization code and what it was issued for.
type authCode struct {
	clientID    string
	redirectURI string
	scope       string
	nonce       string
	challenge   string
	user        User
	authTime    time.Time
	expires     time.Time
	// redeemed is set once the code has been presented at the token
	// endpoint; the grant it produced, if any, is revoked if it is presented
	// again (RFC 6749 §4.1.2).
	redeemed bool
	grant    *grant
}

// authRequest is a validated authorization request (RFC 6749 §4.1.1,
// OpenID Connect Core §3.1.2.1).
type authRequest struct {
	clientID     string
	redirectURI  string
	responseType string
	// responseMode is how the response travels: "query", "fragment" or
	// "form_post"; empty means "query".
	responseMode string
	scope        string
	state        string
	nonce        string
	challenge    string
	method       string
	loginHint    string
}

// serveAuthorize is the authorization endpoint. A request naming an unknown
// client or a redirect URI the client may not use is answered with an error
// page; every later error goes back to the client by redirect (RFC 6749
// §4.1.2.1).
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		s.renderError(w, status, "The authorization request could not be read.")
		return
	}
	form := r.Form
	clientID, ok := single(form, "client_id")
	client, known := s.client(clientID)
	if !ok || !known {
		s.renderError(w, http.StatusBadRequest, "The client_id is missing or unknown.")
		return
	}
	redirectURI, ok := single(form, "redirect_uri")
	if !ok || !redirectAllowed(client, redirectURI) {
		s.renderError(w, http.StatusBadRequest, "The redirect_uri is missing or not registered for this client.")
		return
	}
	req := authRequest{clientID: clientID, redirectURI: redirectURI}
	req.state, _ = single(form, "state")
	fail := func(code, description string) {
		s.redirectError(w, r, req, code, description)
	}
	if rt, ok := s.implicitResponseType(form); ok {
		if code, description := s.checkImplicit(form, client, &req, rt); code != "" {
			fail(code, description)
			return
		}
	} else if code, description := s.checkCode(form, client, &req); code != "" {
		fail(code, description)
		return
	}
	s.authenticate(w, r, req, form)
}

// checkCode validates an authorization code request (RFC 6749 §4.1.1 with
// the PKCE of RFC 7636) into req, and returns the error code and
// description to answer with, or "".
func (s *Server) checkCode(form url.Values, client Client, req *authRequest) (code, description string) {
	if !client.allowsGrant("authorization_code") {
		return "unauthorized_client", "the client may not use the authorization code grant"
	}
	// RFC 6749 §3.1: parameters must not be included more than once.
	for _, name := range []string{"state", "response_type", "scope", "nonce", "code_challenge", "code_challenge_method", "login_hint", "prompt", "response_mode"} {
		if len(form[name]) > 1 {
			return "invalid_request", name + " is repeated"
		}
	}
	if code, description := s.checkResponseMode(form, req, "query"); code != "" {
		return code, description
	}
	req.responseType = form.Get("response_type")
	req.scope = form.Get("scope")
	req.nonce = form.Get("nonce")
	req.challenge = form.Get("code_challenge")
	req.method = form.Get("code_challenge_method")
	req.loginHint = form.Get("login_hint")
	switch {
	case req.responseType == "":
		return "invalid_request", "response_type is required"
	case req.responseType != "code":
		return "unsupported_response_type", "only response_type=code is supported"
	case req.challenge == "":
		return "invalid_request", "code_challenge is required (PKCE, RFC 7636)"
	case req.method != "S256":
		// RFC 7636 §4.3: a missing method means plain, which is refused.
		return "invalid_request", "code_challenge_method must be S256"
	case !validChallenge(req.challenge):
		return "invalid_request", "code_challenge must be 43 base64url characters"
	}
	return "", ""
}

// authenticate signs the user in for the validated request req, at once
// or through the login form, and approves it.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, req authRequest, form url.Values) {
	fail := func(code, description string) {
		s.redirectError(w, r, req, code, description)
	}
	if slices.Contains(strings.Fields(form.Get("prompt")), "none") {
		s.mu.Lock()
		code := s.silentError
		s.mu.Unlock()
		if code != "" {
			fail(code, "the user must interact")
			return
		}
	}
	if !s.interactive {
		user := s.users[0]
		if req.loginHint != "" {
			var ok bool
			if user, ok = s.userByHint(req.loginHint); !ok {
				fail("access_denied", "login_hint names no user of this server")
				return
			}
		}
		s.approve(w, r, req, user)
		return
	}
	if slices.Contains(strings.Fields(form.Get("prompt")), "none") {
		// OpenID Connect Core §3.1.2.6: this server keeps no login session.
		fail("login_required", "the user must sign in")
		return
	}
	if r.Method == http.MethodPost && r.PostForm.Has("username") {
		username := r.PostForm.Get("username")
		user, ok := s.login(username, r.PostForm.Get("password"))
		if !ok {
			s.showLogin(w, req, username, "Invalid username or password.")
			return
		}
		s.approve(w, r, req, user)
		return
	}
	s.showLogin(w, req, req.loginHint, "")
}

// approve issues a code for req to user and sends it to the client, or
// the tokens of an implicit request.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, req authRequest, user User) {
	if req.responseType != "code" {
		s.approveImplicit(w, r, req, user)
		return
	}
	code := rand.Text()
	now := s.now()
	s.mu.Lock()
	for c, ac := range s.codes {
		if now.After(ac.expires) {
			delete(s.codes, c)
		}
	}
	s.codes[code] = &authCode{
		clientID:    req.clientID,
		redirectURI: req.redirectURI,
		scope:       req.scope,
		nonce:       req.nonce,
		challenge:   req.challenge,
		user:        user,
		authTime:    now,
		expires:     now.Add(codeTTL),
	}
	hook := s.authorizeHook
	s.mu.Unlock()

	q := url.Values{"code": {code}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	if !s.omitIss {
		q.Set("iss", s.URL)
	}
	if hook != nil {
		hook(q)
	}
	s.respond(w, r, req, q)
}

// redirectError sends an error authorization response (RFC 6749 §4.1.2.1,
// §4.2.2.1) by req's response mode, carrying iss as RFC 9207 §2 requires
// for errors too.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req authRequest, code, description string) {
	q := url.Values{"error": {code}, "error_description": {description}}
	if req.state != "" {
		q.Set("state", req.state)
	}
	if !s.omitIss {
		q.Set("iss", s.URL)
	}
	s.respond(w, r, req, q)
}

// redirect sends the browser to target: 302 Found after a GET, 303 See
// Other after a POST so that the browser follows with a GET.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	h := w.Header()
	h.Set("Location", target)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}

// single returns the only value of the parameter name; ok is false when it
// is absent, empty or repeated.
func single(form url.Values, name string) (string, bool) {
	vs := form[name]
	if len(vs) != 1 || vs[0] == "" {
		return "", false
	}
	return vs[0], true
}

// validChallenge reports whether c can be an S256 code challenge: the
// unpadded base64url encoding of 32 bytes (RFC 7636 §4.2).
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isBase64URL(c[i]) {
			return false
		}
	}
	return true
}

// validVerifier reports whether v is a well-formed code verifier: 43 to 128
// unreserved characters (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isBase64URL(c) && c != '.' && c != '~' {
			return false
		}
	}
	return true
}

// isBase64URL reports whether c is in the base64url alphabet.
func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
