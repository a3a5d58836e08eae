// Package session keeps authenticated browser sessions for the gateway.
//
// The browser holds only a ticket: a random session id and a random
// per-session key, authenticated and encrypted with gorilla/securecookie under
// keys derived from the configured cookie secret. The Store holds only the
// session sealed with AES-256-GCM under the ticket's key, filed under a SHA-256
// hash of the id. A dump of the store therefore decrypts nothing and names no
// cookie, and a cookie without the store reveals no token.
//
// Idle and absolute timeouts are enforced by the Manager against an injected
// clock, independently of the store's own expiry. A failing store is reported
// as ErrUnavailable, never as ErrNotFound, so the gateway answers 503 and the
// browser keeps its cookie.
//
// Token refresh runs at most once per session across every process sharing the
// store: calls are collapsed in-process and serialised across processes by a
// short store lock (see Manager.Refresh).
package session
