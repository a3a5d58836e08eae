package upstreamtest

import (
	"bytes"
	"crypto/rand"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// implicitGrantType is the Client.GrantTypes entry that allows the
// implicit grant (RFC 6749 §4.2).
const implicitGrantType = "implicit"

// The implicit response types (OAuth 2.0 Multiple Response Type Encoding
// Practices §3, OpenID Connect Core §3.2.2.1), in their canonical order.
const (
	responseToken        = "token"
	responseIDTokenToken = "id_token token"
)

// implicitEnabled reports whether the server supports the implicit grant:
// it does once a registered client lists "implicit" in Client.GrantTypes.
// Like the password grant it is opt-in, never implied by empty GrantTypes,
// because RFC 9700 §2.1.2 says it should not be used; without such a
// client, response_type=token is answered unsupported_response_type and
// discovery does not advertise it.
func (s *Server) implicitEnabled() bool {
	return slices.ContainsFunc(s.clients, allowsImplicit)
}

// allowsImplicit reports whether c may use the implicit grant.
func allowsImplicit(c Client) bool {
	return slices.Contains(c.GrantTypes, implicitGrantType)
}

// implicitResponseType returns the canonical implicit response type that
// form asks for, in any order of its space-separated values (RFC 6749
// §3.1.1); ok is false when it asks for another one or the server has no
// implicit client.
func (s *Server) implicitResponseType(form url.Values) (string, bool) {
	vs := form["response_type"]
	if len(vs) != 1 || !s.implicitEnabled() {
		return "", false
	}
	types := strings.Fields(vs[0])
	slices.Sort(types)
	switch strings.Join(types, " ") {
	case responseToken:
		return responseToken, true
	case responseIDTokenToken:
		return responseIDTokenToken, true
	}
	return "", false
}

// checkImplicit validates an implicit request (RFC 6749 §4.2.1, OpenID
// Connect Core §3.2.2.1) for responseType into req, and returns the error
// code and description to answer with, or "". No PKCE is involved:
// code_challenge is ignored.
func (s *Server) checkImplicit(form url.Values, client Client, req *authRequest, responseType string) (code, description string) {
	req.responseType = responseType
	if code, description := s.checkResponseMode(form, req, "fragment"); code != "" {
		return code, description
	}
	if !allowsImplicit(client) {
		return "unauthorized_client", "the client may not use the implicit grant"
	}
	for _, name := range []string{"state", "scope", "nonce", "login_hint", "prompt"} {
		if len(form[name]) > 1 {
			return "invalid_request", name + " is repeated"
		}
	}
	req.scope = form.Get("scope")
	req.nonce = form.Get("nonce")
	req.loginHint = form.Get("login_hint")
	if responseType == responseIDTokenToken {
		switch {
		case !slices.Contains(strings.Fields(req.scope), "openid"):
			return "invalid_scope", "response_type id_token token needs the openid scope"
		case req.nonce == "":
			// OpenID Connect Core §3.2.2.1: nonce is required here.
			return "invalid_request", "nonce is required for response_type id_token token"
		}
	}
	return "", ""
}

// checkResponseMode sets req.responseMode from the response_mode parameter,
// or to def when there is none, and returns the error code and description
// to answer with, or "". An error leaves def in place so that it travels
// the default way. Responses carrying a token never use the query (OAuth
// 2.0 Multiple Response Type Encoding Practices §2.1); form_post is
// refused with Config.NoFormPost.
func (s *Server) checkResponseMode(form url.Values, req *authRequest, def string) (code, description string) {
	req.responseMode = def
	vs := form["response_mode"]
	switch {
	case len(vs) > 1:
		return "invalid_request", "response_mode is repeated"
	case len(vs) == 0 || vs[0] == "":
		return "", ""
	}
	switch mode := vs[0]; {
	case mode == "query" && (req.responseType == responseToken || req.responseType == responseIDTokenToken):
		return "invalid_request", "response_mode query cannot carry tokens"
	case mode == "form_post" && s.noFormPost:
		return "invalid_request", "response_mode form_post is not supported"
	case mode == "query", mode == "fragment", mode == "form_post":
		req.responseMode = mode
		return "", ""
	}
	return "invalid_request", "response_mode must be query, fragment or form_post"
}

// approveImplicit issues the tokens of an implicit request to user and
// sends them to the client: an access token and, for id_token token, an ID
// token with nonce and at_hash (OpenID Connect Core §3.2.2.10). No refresh
// token is issued (RFC 6749 §4.2.2).
func (s *Server) approveImplicit(w http.ResponseWriter, r *http.Request, req authRequest, user User) {
	now := s.now()
	g := &grant{clientID: req.clientID, user: user, scope: req.scope, authTime: now, sid: s.newSessionID(user)}
	resp, terr := s.mintAccess(g, req.scope, req.clientID, now)
	if terr != nil {
		s.redirectError(w, r, req, terr.code, terr.description)
		return
	}
	q := url.Values{
		"access_token": {resp.AccessToken},
		"token_type":   {resp.TokenType},
		"expires_in":   {strconv.FormatInt(resp.ExpiresIn, 10)},
	}
	if req.scope != "" {
		q.Set("scope", req.scope)
	}
	s.mu.Lock()
	signer := s.idTokenSigner
	hook := s.authorizeHook
	s.mu.Unlock()
	if req.responseType == responseIDTokenToken {
		if signer == nil {
			signer = s.Sign
		}
		idToken, err := signer(s.idTokenClaims(g, now, req.nonce, resp.AccessToken))
		if err != nil {
			s.redirectError(w, r, req, errSign.code, errSign.description)
			return
		}
		q.Set("id_token", idToken)
	}
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

// respond sends the authorization response params to req's redirect URI
// by its response mode: in the query (RFC 6749 §4.1.2), in the fragment
// (§4.2.2) or in an auto-submitted form (OAuth 2.0 Form Post Response
// Mode §2).
func (s *Server) respond(w http.ResponseWriter, r *http.Request, req authRequest, params url.Values) {
	switch req.responseMode {
	case "fragment":
		redirect(w, r, req.redirectURI+"#"+params.Encode())
	case "form_post":
		s.renderFormPost(w, req.redirectURI, params)
	default:
		redirect(w, r, withQuery(req.redirectURI, params))
	}
}

// formPostPage is the page of the form_post response mode: a form that
// posts its hidden fields to the redirect URI, submitted by a script on
// load, with a button for browsers without scripts (OAuth 2.0 Form Post
// Response Mode §2).
var formPostPage = template.Must(template.New("form_post").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Submit this form</title>
</head>
<body>
<form method="post" action="{{.Action}}">
{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<noscript><button type="submit">Continue</button></noscript>
</form>
<script nonce="{{.Nonce}}">document.forms[0].submit();</script>
</body>
</html>
`))

// formPost is the data of formPostPage.
type formPost struct {
	Action string
	Fields []hiddenField
	Nonce  string
}

// renderFormPost answers with formPostPage posting params to action, the
// fields in name order. Only the page's own script may run (a CSP nonce).
func (s *Server) renderFormPost(w http.ResponseWriter, action string, params url.Values) {
	page := formPost{Action: action, Nonce: rand.Text()}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		for _, v := range params[name] {
			page.Fields = append(page.Fields, hiddenField{name, v})
		}
	}
	var buf bytes.Buffer
	if err := formPostPage.Execute(&buf, page); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeHTML(w, http.StatusOK, "default-src 'none'; script-src 'nonce-"+page.Nonce+"'; frame-ancestors 'none'; base-uri 'none'", buf.Bytes())
}

// showLogin shows the login form for req, as renderLogin does, carrying
// response_mode through the form when it is not the query.
func (s *Server) showLogin(w http.ResponseWriter, req authRequest, username, errMsg string) {
	if req.responseMode == "" || req.responseMode == "query" {
		s.renderLogin(w, req, username, errMsg)
		return
	}
	var hidden []hiddenField
	for _, f := range []hiddenField{
		{"client_id", req.clientID},
		{"redirect_uri", req.redirectURI},
		{"response_type", req.responseType},
		{"response_mode", req.responseMode},
		{"scope", req.scope},
		{"state", req.state},
		{"nonce", req.nonce},
		{"code_challenge", req.challenge},
		{"code_challenge_method", req.method},
	} {
		// An empty state must stay absent, not turn into "state=".
		if f.Value != "" {
			hidden = append(hidden, f)
		}
	}
	s.renderPage(w, http.StatusOK, "login", loginPage{
		ClientID: req.clientID,
		Error:    errMsg,
		Username: username,
		Hidden:   hidden,
		Users:    s.users,
	})
}
