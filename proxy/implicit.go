package proxy

import (
	"context"
	"crypto/rand"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/authgate/authgate/upstream"
)

// Routes with grant: implicit (RFC 6749 §4.2, OpenID Connect Core §3.2)
// for servers that allow nothing else; RFC 9700 §2.1.2 says clients should
// not use it, and the gateway warns at start-up. The tokens reach the
// browser in the authorization response, so the gateway takes them off it
// at once: a same-origin POST to /oauth2/implicit, where state (bound to
// the browser), nonce and at_hash are checked and a server-side session
// starts exactly as in the code flow. The token never rides a URL the
// gateway builds and is removed from the browser's history.
//
// Both delivery modes end on one tiny page of the gateway's:
//   - fragment: the server redirects to /oauth2/callback#access_token=…;
//     the page's script reads the fragment, removes it from the history
//     (history.replaceState) and posts it;
//   - form_post (when the server lists it): the server's page posts to
//     /oauth2/callback cross-site, which carries no SameSite=Lax cookie,
//     so the gateway cannot check the browser binding there; it answers
//     with the page, which posts the same fields same-origin, cookies and
//     all.

var (
	relayTpl = template.Must(template.ParseFS(templateFS, "templates/relay.html"))
	// fragmentJS posts the fragment's parameters, after removing it from
	// the address bar and the history.
	fragmentJS = template.JS(`(function(){var h=location.hash.slice(1);history.replaceState(null,"",location.pathname);var f=document.forms[0];new URLSearchParams(h).forEach(function(v,k){var i=document.createElement("input");i.type="hidden";i.name=k;i.value=v;f.appendChild(i)});f.submit()})();`)
	// relayJS posts the server-rendered fields.
	relayJS = template.JS(`document.forms[0].submit();`)
)

// relayData fills templates/relay.html.
type relayData struct {
	Action string
	Fields map[string]string
	Nonce  string
	Script template.JS
	CSS    template.CSS
}

// fragmentPage answers GET /oauth2/callback without a query: an implicit
// response in the fragment, which only the browser sees.
func (s *Server) fragmentPage(w http.ResponseWriter, r *http.Request) {
	s.relay(w, r, nil, fragmentJS)
}

// implicitFormPost answers an implicit response delivered by form_post to
// /oauth2/callback: it relays the response's parameters to
// /oauth2/implicit from the gateway's own origin.
func (s *Server) implicitFormPost(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	fields := map[string]string{}
	for _, k := range upstream.ImplicitParams {
		if v := r.PostForm.Get(k); v != "" {
			if len(v) > maxParam*4 {
				s.fail(w, r, errTooLarge)
				return
			}
			fields[k] = v
		}
	}
	if fields["state"] == "" {
		s.fail(w, r, errLoginExpired)
		return
	}
	s.relay(w, r, fields, relayJS)
}

// relay writes the self-posting page with a per-response script nonce:
// no other script, no caching, no referrer.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, fields map[string]string, script template.JS) {
	nonce := rand.Text()
	h := w.Header()
	noStore(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	// form-action also governs where the POST's answer redirects (a silent
	// sign-in's fallback to the server, rd on another allowed host).
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'sha256-"+hashCSS(pageCSS)+"'; form-action 'self'"+s.loginFormActions(r.Context())+"; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(http.StatusOK)
	d := relayData{Action: s.cfg.Prefix + "/implicit", Fields: fields, Nonce: nonce, Script: script, CSS: template.CSS(pageCSS)}
	if err := relayTpl.Execute(w, d); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "error", err.Error())
	}
}

// loginFormActions are the CSP form-action sources, besides 'self', that a
// sign-in POST may be redirected to: the browser-login servers'
// authorization endpoints (a silent sign-in's fallback, a fresh login) and
// the hosts of allowed_redirect_domains (rd). Each starts with a space.
func (s *Server) loginFormActions(ctx context.Context) string {
	var b strings.Builder
	seen := map[string]bool{}
	add := func(src string) {
		if src != "" && !seen[src] {
			seen[src] = true
			b.WriteString(" " + src)
		}
	}
	for _, rt := range s.routes {
		if browserLogin(rt) {
			if m, err := rt.up.Metadata(ctx); err == nil {
				add(origin(m.AuthorizationEndpoint))
			}
		}
	}
	for _, d := range s.cfg.AllowedRedirectDomains {
		if strings.HasPrefix(d, ".") {
			d = "*" + d
		}
		if !strings.ContainsAny(d, ";,'\" ") {
			add(d)
		}
	}
	return b.String()
}

// implicit serves POST /oauth2/implicit: an implicit authorization
// response, posted from the gateway's own page.
func (s *Server) implicit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.fail(w, r, errMethod)
		return
	}
	if !s.parseForm(w, r) {
		return
	}
	q := url.Values{}
	for _, k := range upstream.ImplicitParams {
		if vs := r.PostForm[k]; len(vs) == 1 {
			q[k] = vs
		} else if len(vs) > 1 {
			s.fail(w, r, errBadRequest) // a repeated parameter (RFC 6749 §3.1)
			return
		}
	}
	ls, rt, ok := s.authorizationResponse(w, r, q, GrantImplicit, nil)
	if !ok {
		return
	}
	login, err := rt.up.CompleteImplicit(r.Context(), q, ls.Nonce)
	s.finishLogin(w, r, rt, ls, login, err, http.StatusSeeOther)
}
