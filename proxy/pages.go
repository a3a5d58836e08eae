package proxy

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
)

//go:embed templates
var templateFS embed.FS

var (
	pageCSS = mustRead("templates/page.css")
	pageTpl = template.Must(template.ParseFS(templateFS, "templates/page.html"))
	// pageCSP allows exactly the embedded stylesheet and nothing else: no
	// script, no frames, no form posts elsewhere (SECURITY.md 33).
	pageCSP = "default-src 'none'; style-src 'sha256-" + hashCSS(pageCSS) + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

func mustRead(name string) string {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(b))
}

func hashCSS(css string) string {
	sum := sha256.Sum256([]byte(css))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// pageData fills templates/page.html.
type pageData struct {
	Title, Message, Detail string
	Link, LinkText         string
	Form                   *pageForm
	Login                  *loginForm
	Status                 int
	CSS                    template.CSS
	// Account names the signed-in user (a 403 page); never a token.
	Account string
	// formTarget is an origin, besides the gateway's own, that the form's
	// POST may be redirected to (CSP form-action).
	formTarget string
}

// loginForm is the password grant's sign-in form. It never carries a
// password back.
type loginForm struct {
	Action, CSRF, RD, Username, Error string
	// Notice is a fixed sentence above the form ("You have been signed
	// out."), never text from the request.
	Notice string
}

// pageForm is a one-button POST form on a page.
type pageForm struct {
	Action string
	Fields map[string]string
	Button string
}

// noStore sets the headers of every response the gateway writes itself.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
}

// page writes pe as HTML to browsers and as JSON to API clients.
func (s *Server) page(w http.ResponseWriter, r *http.Request, pe *pageError) {
	d := pageData{Title: pe.title, Message: pe.message, Status: pe.status}
	if pe.retry != "" {
		d.Link, d.LinkText = pe.retry, "Sign in again"
	}
	s.render(w, r, pe.status, d)
}

// render writes a gateway page with the security headers: HTML to
// browsers, JSON to API clients. The JSON of an error (status 400 and up)
// is {"status": 401, "error": "<title>", "message": "<sentence>"}, the
// same for every error the gateway answers itself; another answer has
// "title" where an error has "error".
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	h := w.Header()
	noStore(h)
	if !wantsHTML(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		v := map[string]any{"status": status, "message": d.Message}
		if status >= 400 {
			v["error"] = d.Title
		} else {
			v["title"] = d.Title
		}
		if d.Form != nil {
			// An API client confirms as the page's form would.
			v["form"] = map[string]any{"method": "POST", "action": d.Form.Action, "fields": d.Form.Fields}
		}
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	csp := pageCSP
	if d.formTarget != "" {
		csp = strings.Replace(csp, "form-action 'self'", "form-action 'self' "+d.formTarget, 1)
	}
	h.Set("Content-Security-Policy", csp)
	w.WriteHeader(status)
	d.CSS = template.CSS(pageCSS)
	if err := pageTpl.Execute(w, d); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "error", err.Error())
	}
}

// wantsHTML tells a browser from an API client.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isNavigation reports a browser's top-level navigation, the only request
// that may be answered with a login redirect; XHR, fetch and API clients get
// 401 instead.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if !wantsHTML(r) || r.Header.Get("X-Requested-With") != "" {
		return false
	}
	mode := r.Header.Get("Sec-Fetch-Mode")
	return mode == "" || mode == "navigate"
}

// writeJSON writes v with the no-store headers.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	noStore(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
