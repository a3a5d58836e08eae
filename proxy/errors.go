package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// pageError is an error with the status and words a user sees. Its fields
// never hold a token, code, cookie or secret.
type pageError struct {
	status  int
	title   string
	message string
	// retry, when set, links to where the user can start over.
	retry string
	// cause is logged, never shown.
	cause error
	// retryAfter, when set, is sent as Retry-After (429, 503).
	retryAfter time.Duration
	// logged means the cause was logged where it happened (once per
	// outage, not once per request): fail logs nothing more.
	logged bool
	// reason is a refusal's bounded word for the access log ("policy",
	// "cross_site"); a 403 without one logs "forbidden".
	reason string
}

func (e *pageError) Error() string {
	if e.cause != nil {
		return e.title + ": " + e.cause.Error()
	}
	return e.title
}

func (e *pageError) Unwrap() error { return e.cause }

// withMessage returns a copy of e that shows message.
func (e *pageError) withMessage(message string) *pageError {
	c := *e
	c.message = message
	return &c
}

// withCause returns a copy of e that logs cause.
func (e *pageError) withCause(cause error) *pageError {
	c := *e
	c.cause = cause
	return &c
}

var (
	errNoRoute    = &pageError{status: http.StatusNotFound, title: "Not found", message: "No application is configured for this address."}
	errForbidden  = &pageError{status: http.StatusForbidden, reason: "policy", title: "Access denied", message: "You are signed in, but your account is not allowed to use this application. Ask its owner for access, or sign out and use another account."}
	errCrossSite  = &pageError{status: http.StatusForbidden, reason: "cross_site", title: "Cross-site request refused", message: "This request came from another site and was refused to protect your session. Go back to the application and try again."}
	errStoreDown  = &pageError{status: http.StatusServiceUnavailable, title: "Temporarily unavailable", message: "The session store cannot be reached. Your session is kept; try again in a moment."}
	errUpstream   = &pageError{status: http.StatusBadGateway, title: "Sign-in service unavailable", message: "The authorization server is not answering. Try again in a moment."}
	errUpTimeout  = &pageError{status: http.StatusGatewayTimeout, title: "Sign-in service timeout", message: "The authorization server took too long to answer. Try again in a moment."}
	errInternal   = &pageError{status: http.StatusInternalServerError, title: "Internal error", message: "Something went wrong in the gateway. Try again; if it persists, tell the administrator."}
	errBadRequest = &pageError{status: http.StatusBadRequest, title: "Bad request", message: "The request could not be understood."}
)

// classify maps any error to the page the user gets: the one place where
// errors become HTTP statuses.
func classify(err error) *pageError {
	var pe *pageError
	var te *upstream.TokenError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, session.ErrUnavailable):
		return errStoreDown.withCause(err)
	case errors.Is(err, session.ErrLoginEnded):
		return errLoginFailed.withCause(err)
	case errors.Is(err, upstream.ErrUnavailable) && errors.Is(err, context.DeadlineExceeded):
		return errUpTimeout.withCause(err)
	case errors.Is(err, upstream.ErrUnavailable), errors.As(err, &te):
		// A token endpoint answer that is no refusal (429 slow down, say)
		// is the server's trouble, not the gateway's.
		return errUpstream.withCause(err)
	default:
		return errInternal.withCause(err)
	}
}

// statusClientGone is what the access log records for a client that left
// before its answer (nginx's 499).
const statusClientGone = 499

// fail logs err (server-side causes only) and writes its page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away (during a refresh wait, say): nobody reads
		// a page, and it is not the gateway's failure.
		s.log.DebugContext(r.Context(), "client gone", "path", r.URL.Path)
		w.WriteHeader(statusClientGone) // for the access log; nobody reads it
		return
	}
	pe := classify(err)
	if x := exchangeOf(r); x != nil && pe.reason != "" {
		x.reason = pe.reason
	}
	switch {
	case pe.logged:
	case pe.status >= 500:
		s.log.ErrorContext(r.Context(), pe.title, "path", r.URL.Path, "status", pe.status, "error", err.Error())
	case pe.cause != nil:
		s.log.InfoContext(r.Context(), pe.title, "path", r.URL.Path, "status", pe.status, "error", pe.cause.Error())
	}
	switch {
	case pe.retryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(int((pe.retryAfter+time.Second-1)/time.Second)))
	case pe.status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
	}
	s.page(w, r, pe)
}
