package main

import (
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// demoBackend is the demo's protected application: a page showing what the
// gateway sent it. It is a stand-in for a legacy app that cannot do OAuth.
func demoBackend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-Forwarded-Preferred-Username")
		if user == "" {
			user = r.Header.Get("X-Forwarded-User")
		}
		d := backendPage{User: user, Path: r.URL.Path, Now: time.Now().Format(time.TimeOnly)}
		for _, k := range sortedKeys(r.Header) {
			v := strings.Join(r.Header[k], ", ")
			if k == "Authorization" {
				v = abbreviate(v)
			}
			d.Headers = append(d.Headers, [2]string{k, v})
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			d.Claims, d.Expires = jwtClaims(tok)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = backendTpl.Execute(w, d)
	})
}

type backendPage struct {
	User, Path, Now string
	Headers         [][2]string
	Claims          string
	Expires         string
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// abbreviate shows that a token arrived without printing all of it.
func abbreviate(v string) string {
	if len(v) <= 40 {
		return v
	}
	return v[:32] + "…(" + strconv.Itoa(len(v)) + " characters)"
}

// jwtClaims decodes (without verifying: the gateway did) a JWT's payload for
// display.
func jwtClaims(tok string) (string, string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "(not a JWT: an opaque access token)", ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "(undecodable payload)", ""
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return "(payload is not JSON)", ""
	}
	pretty, _ := json.MarshalIndent(claims, "", "  ")
	exp := ""
	if e, ok := claims["exp"].(float64); ok {
		exp = time.Until(time.Unix(int64(e), 0)).Round(time.Second).String()
	}
	return string(pretty), exp
}

var backendTpl = template.Must(template.New("backend").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo backend</title>
<style>
body{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#1d2330}
table{border-collapse:collapse;width:100%}td{border-bottom:1px solid #e5e7eb;padding:.3rem .5rem;vertical-align:top;font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}
td:first-child{white-space:nowrap;font-weight:600;width:1%}pre{background:#f5f6f8;padding:1rem;border-radius:6px;overflow:auto}
.ok{color:#15803d}
</style></head><body>
<h1>Hello{{if .User}}, {{.User}}{{end}}!</h1>
<p>This page is the <b>backend</b>: an application that knows nothing of OAuth. authgate logged you in and added the headers below to your request for <code>{{.Path}}</code> at {{.Now}}.</p>
<p><a href="/oauth2/userinfo">/oauth2/userinfo</a> · <a href="/oauth2/sign_out">Sign out</a> · <a href="/">Reload</a></p>
<h2>Access token claims</h2>
{{if .Claims}}<p class="ok">The request carried <code>Authorization: Bearer …</code>{{if .Expires}}, expiring in {{.Expires}} (authgate refreshes it shortly before){{end}}.</p><pre>{{.Claims}}</pre>{{else}}<p>No bearer token arrived.</p>{{end}}
<h2>Request headers received</h2>
<table>{{range .Headers}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
</body></html>
`))
