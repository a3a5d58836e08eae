package upstreamtest

import (
	"bytes"
	"net/http"
)

// pageTemplates are the HTML pages: the login form, an error page and the
// signed-out page. html/template escapes every value.
const pageTemplates = `
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} · authgate test server</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1f2933;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem;width:100%;max-width:22rem}
h1{font-size:1.25rem;margin:0 0 1rem}
label{display:block;font-size:.875rem;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{box-sizing:border-box;width:100%;padding:.5rem;border:1px solid #cbd2d9;border-radius:4px;font-size:1rem}
button{margin-top:1.25rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#3f51b5;color:#fff;font-size:1rem;cursor:pointer}
.error{background:#fdecea;color:#b71c1c;padding:.5rem .75rem;border-radius:4px;font-size:.875rem}
.hint{margin-top:1.5rem;font-size:.8rem;color:#52606d}
.hint code{background:#f0f2f5;padding:0 .25rem;border-radius:3px}
</style>
</head>
<body>
<main>
{{end}}
{{define "foot"}}</main>
</body>
</html>
{{end}}
{{define "login"}}{{template "head" "Sign in"}}<h1>Sign in to {{.ClientID}}</h1>
{{with .Error}}<p class="error" role="alert">{{.}}</p>{{end}}
<form method="post" action="/authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label for="username">Username</label>
<input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<div class="hint">This is a test server. Accounts:
<ul>{{range .Users}}<li><code>{{.Username}}</code> / <code>{{.Password}}</code></li>{{end}}</ul>
</div>
{{template "foot"}}{{end}}
{{define "error"}}{{template "head" "Error"}}<h1>Request refused</h1>
<p class="error">{{.}}</p>
{{template "foot"}}{{end}}
{{define "signed_out"}}{{template "head" "Signed out"}}<h1>Signed out</h1>
<p>You have been signed out. You can close this window.</p>
{{template "foot"}}{{end}}
`

// hiddenField is a form field the login page carries through.
type hiddenField struct {
	Name, Value string
}

// loginPage is the data of the login template.
type loginPage struct {
	ClientID string
	Error    string
	Username string
	Hidden   []hiddenField
	Users    []User
}

// renderLogin shows the login form for req.
func (s *Server) renderLogin(w http.ResponseWriter, req authRequest, username, errMsg string) {
	hidden := []hiddenField{
		{"client_id", req.clientID},
		{"redirect_uri", req.redirectURI},
		{"response_type", req.responseType},
		{"scope", req.scope},
		{"state", req.state},
		{"nonce", req.nonce},
		{"code_challenge", req.challenge},
		{"code_challenge_method", req.method},
	}
	// Empty fields are left out: an empty state must stay absent, not turn
	// into "state=" in the response.
	kept := hidden[:0]
	for _, f := range hidden {
		if f.Value != "" {
			kept = append(kept, f)
		}
	}
	s.renderPage(w, http.StatusOK, "login", loginPage{
		ClientID: req.clientID,
		Error:    errMsg,
		Username: username,
		Hidden:   kept,
		Users:    s.users,
	})
}

// renderError shows msg on an error page with the given status.
func (s *Server) renderError(w http.ResponseWriter, status int, msg string) {
	s.renderPage(w, status, "error", msg)
}

// renderPage executes the named template into a buffer first, so that a
// template error never leaves half a page behind.
func (s *Server) renderPage(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeHTML(w, status, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", buf.Bytes())
}

// writeHTML writes an HTML page with the headers every page of the server
// sends: no caching, no referrer, no framing, and csp.
func writeHTML(w http.ResponseWriter, status int, csp string, page []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	_, _ = w.Write(page)
}
