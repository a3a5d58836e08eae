package proxy

import (
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// statusWriter records the status and size of a response. Unwrap lets
// http.ResponseController reach Flush and Hijack (websockets, streaming).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Bounds of the client-sent fields of an access log line.
const (
	maxLoggedPath = 2048
	maxLoggedHost = 256
)

// accessLog writes the request's line: method, host, path (escaped, as
// sent, never the query, which carries codes and state), route, status,
// size, duration, peer and client, user, request id, the trace id of a
// sampled trace, and a refusal's reason. It is built by hand into a pooled
// buffer, in the process log's format, and written in one Write: through
// slog it cost two allocations and most of the line's CPU
// (BenchmarkAccessLogLine). Every value is quoted or escaped as slog's
// handlers do, so a path, host or claim cannot forge a line or a field
// (control characters never pass raw).
func (s *Server) accessLog(r *http.Request, x *exchange, d time.Duration) {
	if s.accessOut == nil {
		return
	}
	level := levelFor(x.status)
	if !s.log.Enabled(r.Context(), level) {
		return
	}
	bp := linePool.Get().(*[]byte)
	l := logLine{b: (*bp)[:0], json: s.accessJSON}
	l.begin(time.Now(), level, "request")
	l.str("method", r.Method)
	l.str("host", clip(r.Host, maxLoggedHost))
	l.str("path", clip(rawPath(r), maxLoggedPath))
	if x.label != "" {
		l.str("route", x.label)
	}
	l.int("status", int64(x.status))
	l.int("bytes", x.bytes)
	l.duration("duration", d)
	l.str("remote", r.RemoteAddr)
	if len(s.trusted) > 0 {
		l.addr("client", s.trusted.clientAddr(r))
	}
	if x.user != "" {
		l.str("user", clip(x.user, maxLoggedHost))
	}
	l.str("request_id", x.id[0])
	if s.tracer != nil {
		if sc := trace.SpanContextFromContext(r.Context()); sc.IsSampled() {
			id := sc.TraceID()
			l.hex("trace_id", id[:])
		}
	}
	if x.reason != "" {
		l.str("reason", x.reason)
	}
	l.end()
	_, _ = s.accessOut.Write(l.b) // nowhere to report a failed log write
	if cap(l.b) <= 64<<10 {
		*bp = l.b
		linePool.Put(bp)
	}
}

// rawPath is the path as the client sent it (escapes kept: "/a%2Fb", not
// "/a/b"), without the query: the request target up to "?", or, for an
// absolute-form target, its URL's escaped path.
func rawPath(r *http.Request) string {
	p := r.RequestURI
	if p == "" || p[0] != '/' {
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return p
}

// levelFor logs server failures louder than the rest.
func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// linePool holds the access log's line buffers.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// clip bounds a client-sent value, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return truncate(s, n)
}

// logLine appends one log record in the format of slog.TextHandler
// (key=value, values quoted when needed) or slog.JSONHandler.
type logLine struct {
	b    []byte
	json bool
}

func (l *logLine) begin(t time.Time, level slog.Level, msg string) {
	if l.json {
		l.b = append(l.b, `{"time":"`...)
		l.b = t.AppendFormat(l.b, time.RFC3339Nano)
		l.b = append(l.b, '"')
	} else {
		l.b = append(l.b, "time="...)
		l.b = appendMillis(l.b, t)
	}
	l.str("level", level.String())
	l.str("msg", msg)
}

func (l *logLine) end() {
	if l.json {
		l.b = append(l.b, '}')
	}
	l.b = append(l.b, '\n')
}

// key starts a field (keys are the code's own, never in need of escaping).
func (l *logLine) key(k string) {
	if l.json {
		l.b = append(l.b, ',', '"')
		l.b = append(l.b, k...)
		l.b = append(l.b, '"', ':')
	} else {
		l.b = append(l.b, ' ')
		l.b = append(l.b, k...)
		l.b = append(l.b, '=')
	}
}

// addr writes an address (never in need of escaping) without making a
// string of it.
func (l *logLine) addr(k string, a netip.Addr) {
	l.key(k)
	if l.json {
		l.b = append(l.b, '"')
	}
	l.b = a.AppendTo(l.b)
	if l.json {
		l.b = append(l.b, '"')
	}
}

// hex writes b in lower-case hex (never in need of escaping).
func (l *logLine) hex(k string, b []byte) {
	l.key(k)
	if l.json {
		l.b = append(l.b, '"')
	}
	l.b = hex.AppendEncode(l.b, b)
	if l.json {
		l.b = append(l.b, '"')
	}
}

func (l *logLine) str(k, v string) {
	l.key(k)
	switch {
	case l.json:
		l.b = appendJSONString(l.b, v)
	case needsQuoting(v):
		l.b = strconv.AppendQuote(l.b, v)
	default:
		l.b = append(l.b, v...)
	}
}

func (l *logLine) int(k string, v int64) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, v, 10)
}

// duration is seconds in JSON (a number with microseconds: what log
// pipelines aggregate) and milliseconds with a unit in text ("1.234ms",
// for people), never bare nanoseconds.
func (l *logLine) duration(k string, d time.Duration) {
	l.key(k)
	if l.json {
		l.b = strconv.AppendFloat(l.b, d.Seconds(), 'f', 6, 64)
		return
	}
	l.b = strconv.AppendFloat(l.b, float64(d)/float64(time.Millisecond), 'f', 3, 64)
	l.b = append(l.b, "ms"...)
}

// appendMillis writes t as slog.TextHandler does, RFC 3339 with exactly
// three fractional digits. AppendFormat is fast only for the RFC3339Nano
// layout, which drops trailing zeros: so the time, cut to the
// millisecond, gets a tenth of one added (four digits, never zeros at
// the end), and the fourth digit is cut out again.
func appendMillis(b []byte, t time.Time) []byte {
	const upToMillis = len("2006-01-02T15:04:05.000")
	n := len(b)
	b = t.Truncate(time.Millisecond).Add(time.Millisecond/10).AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+upToMillis], b[n+upToMillis+1:]...)
}

// needsQuoting is slog.TextHandler's rule: empty, a space, '=', '"', a
// control character, invalid UTF-8, or a non-printing or space rune.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendJSONString appends s as a JSON string, escaped as
// slog.JSONHandler does: '"', '\\' and control characters escaped,
// invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			switch r {
			case utf8.RuneError:
				b = append(b, `\ufffd`...)
			default:
				b = append(b, `\u202`...)
				b = append(b, hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
