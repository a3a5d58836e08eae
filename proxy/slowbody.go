package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// errSlowBody answers a request whose body did not arrive in time.
var errSlowBody = &pageError{status: http.StatusRequestTimeout, title: "Request timeout",
	message: "The request body arrived too slowly. Try again."}

// boundBody makes the rest of r's body due within d: the connection's read
// deadline (http.ResponseController), so a client that trickles a body, or
// declares one and never sends it, is cut off at d however many bytes it
// sends. It does nothing for a request without a body or for d <= 0.
func boundBody(w http.ResponseWriter, r *http.Request, d time.Duration) {
	if d <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	// A deadline is wall-clock time on the socket, not the injected clock.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
}

// slowBody reports whether err is a body read cut off by boundBody.
func slowBody(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// failSlowBody answers 408 and closes the connection: the rest of the body
// is not worth reading.
func (s *Server) failSlowBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	s.fail(w, r, errSlowBody)
}

// uploadBody is a proxied request's body under limits.upload_timeout: it
// remembers a read cut off by the deadline, so that the backend error the
// transport then reports is answered 408, not 502 or 504.
type uploadBody struct {
	io.ReadCloser
	timedOut atomic.Bool // the transport reads in a goroutine of its own
}

func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && slowBody(err) {
		b.timedOut.Store(true)
	}
	return n, err
}

// uploadCutOff reports whether r (the proxied request, or the one the
// reverse proxy made of it) carries an upload cut off by
// limits.upload_timeout.
func uploadCutOff(r *http.Request) bool {
	ub, ok := r.Context().Value(uploadKey{}).(*uploadBody)
	return ok && ub.timedOut.Load()
}

// errUploadCutOff is ModifyResponse's error for an answer to a cut-off
// upload; the error handler turns it into 408.
var errUploadCutOff = errors.New("the upload was cut off by limits.upload_timeout")

// uploadKey carries a bound upload's body to ModifyResponse, which sees
// only the outgoing request (whose body the reverse proxy wraps).
type uploadKey struct{}

// boundUpload applies limits.upload_timeout to a request about to be
// proxied and returns the request to proxy; websocket handshakes are left
// alone (the deadline would end the connection they become).
func (s *Server) boundUpload(w http.ResponseWriter, r *http.Request) *http.Request {
	d := s.cfg.Limits.UploadTimeout
	if d <= 0 || r.Body == nil || r.Body == http.NoBody || r.Header.Get("Upgrade") != "" {
		return r
	}
	boundBody(w, r, d)
	ub := &uploadBody{ReadCloser: r.Body}
	r = r.WithContext(context.WithValue(r.Context(), uploadKey{}, ub))
	r.Body = ub
	return r
}
