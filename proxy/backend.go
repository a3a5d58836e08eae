package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/authgate/authgate/session"
)

// NewTransport returns the transport to the backends: many idle connections
// per host (the default of 2 makes a busy gateway dial for most requests),
// bounded dials and TLS handshakes, no proxy from the environment.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// newReverseProxy builds the route's proxy. Rewrite (not Director) runs
// after hop-by-hop headers, including any named by Connection, are gone, so
// "Connection: Authorization" cannot strip what it injects (SECURITY.md 23).
func (s *Server) newReverseProxy(rt *route, transport http.RoundTripper) *httputil.ReverseProxy {
	identity := on(rt.cfg.IdentityHeaders, true)
	passHost := on(rt.cfg.PassHostHeader, true)
	ours := append(s.sessionCookies(), s.cookies.binding, s.cookies.signedOut)
	uploadsBound := s.cfg.Limits.UploadTimeout > 0
	modify := func(resp *http.Response) error {
		// A backend that answered a cut-off upload answered half a
		// request: the client hears 408, not that answer. Only bound
		// uploads are looked for: the search walks the request's
		// context chain.
		if uploadsBound && uploadCutOff(resp.Request) {
			return errUploadCutOff
		}
		// The request has one id, the one the backend was sent; a
		// backend's own would reach the client beside it.
		delete(resp.Header, requestIDHeader)
		if rt.machine != nil {
			rt.machine.backendRefused(resp)
		}
		return nil
	}
	return &httputil.ReverseProxy{
		ModifyResponse: modify,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rt.backend)
			if passHost {
				pr.Out.Host = pr.In.Host
			}
			s.setXForwarded(pr)
			removeCookies(pr.Out.Header, ours...)
			x := exchangeOf(pr.In)
			pr.Out.Header[requestIDHeader] = x.id
			sess := x.sess
			if sess == nil {
				return // a public path: no identity
			}
			v := injectedFor(sess)
			h := pr.Out.Header
			h["Authorization"] = v.authorization
			if identity {
				setIf(h, "X-Forwarded-User", v.user)
				setIf(h, "X-Forwarded-Email", v.email)
				setIf(h, "X-Forwarded-Preferred-Username", v.preferredUsername)
				setIf(h, "X-Forwarded-Groups", v.groups)
			}
		},
		Transport:    transport,
		BufferPool:   copyBuffers,
		ErrorHandler: s.backendError,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// copyBuffers lends ReverseProxy its 32 KiB copy buffers: without a pool
// it allocates one per request (the largest allocation of the hot path).
var copyBuffers = NewBufferPool()

// NewBufferPool returns a pool of the 32 KiB copy buffers the gateway's
// reverse proxies use, for a fair bare baseline in benchmarks.
func NewBufferPool() httputil.BufferPool { return &bufferPool{} }

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// setXForwarded sets X-Forwarded-For, -Host and -Proto for the backend.
// From a trusted proxy the chain it sent is kept (and the peer appended),
// with its Host and Proto; from anyone else, client copies are already gone
// and the gateway states its own view (SECURITY.md 24).
func (s *Server) setXForwarded(pr *httputil.ProxyRequest) {
	trusted := s.trusted.fromTrustedProxy(pr.In)
	if trusted {
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = []string{strings.Join(xff, ", ")}
		}
	}
	pr.SetXForwarded()
	if trusted {
		for _, k := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Get(k); v != "" {
				pr.Out.Header.Set(k, v)
			}
		}
	}
}

func setIf(h http.Header, k string, v []string) {
	if v != nil {
		h[k] = v
	}
}

// injected are the header values the gateway asserts for a session, made
// once per cached session (session.Derived) rather than per request. Each
// slice has len = cap 1, so a header map that appends to one copies it
// instead of writing into the shared array.
type injected struct {
	authorization, accessToken, user, email, preferredUsername, groups []string
}

func injectedFor(sess *session.Session) *injected {
	return sess.Derived(newInjected).(*injected)
}

func newInjected(sess *session.Session) any {
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{headerValue(v)}
	}
	v := &injected{
		authorization:     []string{"Bearer " + sess.Token.AccessToken.Reveal()},
		accessToken:       []string{sess.Token.AccessToken.Reveal()},
		user:              one(sess.UserName()),
		email:             one(sess.Email),
		preferredUsername: one(sess.PreferredUsername),
	}
	if len(sess.Groups) > 0 {
		v.groups = one(strings.Join(sess.Groups, ","))
	}
	return v
}

// errBackend* are the backend failures the error pages tell apart.
var (
	errBackendDown    = &pageError{status: http.StatusBadGateway, title: "Backend unavailable", message: "The application behind this gateway is not answering. Try again in a moment."}
	errBackendTimeout = &pageError{status: http.StatusGatewayTimeout, title: "Backend timeout", message: "The application behind this gateway took too long to answer."}
)

// backendError answers a failed proxy round trip with a clean page.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, err error) {
	if uploadCutOff(r) {
		// Before the check below: net/http cancels the request's context
		// when its body read fails, but the client is still there to hear.
		s.log.InfoContext(r.Context(), "upload cut off by limits.upload_timeout", "path", r.URL.Path)
		s.failSlowBody(w, r)
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	s.log.WarnContext(r.Context(), "backend request failed", "path", r.URL.Path, "error", err.Error())
	if isTimeout(err) {
		s.page(w, r, errBackendTimeout)
		return
	}
	s.page(w, r, errBackendDown)
}

// isTimeout reports a round trip that ran out of time: a deadline, or a
// network timeout (the response header timeout, a dial timeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
