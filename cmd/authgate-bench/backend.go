package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authgate/authgate/proxy"
)

// The backend's answer headers: the checks read them through whatever
// proxy stands in front.
const (
	// hdrBackend is on every answer of the bench's backend: the request
	// got through.
	hdrBackend = "X-Bench-Backend"
	// hdrBearer is "1" when the request carried Authorization: Bearer with
	// a token, "0" otherwise. The token itself is never echoed.
	hdrBearer = "X-Bench-Bearer"
	// hdrCapture asks the backend to keep the request's headers: how the
	// bench learns what a gateway sends, for the bare-carrying target.
	hdrCapture = "X-Bench-Capture"
)

// traceReceiverPath is where the backend takes OTLP/HTTP trace exports
// (memory-tracing's): it reads each and answers 200, as a collector would.
const traceReceiverPath = "/bench/v1/traces"

// backend is the application behind every proxy: 200, a small body, and
// whether it received a bearer token. It is also the receiver of the
// gateways' trace exports.
type backend struct {
	URL    string
	srv    *http.Server
	hits   atomic.Int64
	bearer atomic.Int64
	// exports counts the trace exports received.
	exports atomic.Int64
	// captured holds the headers of the last request that asked
	// (hdrCapture).
	captured atomic.Pointer[http.Header]
}

// startBackend serves the backend on addr (host:port; port 0 picks one).
func startBackend(addr string) (*backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &backend{URL: "http://" + ln.Addr().String()}
	body := []byte("ok\n")
	b.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == traceReceiverPath && r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, r.Body)
			b.exports.Add(1)
			w.Header()["Content-Type"] = []string{"application/x-protobuf"} // an empty ExportTraceServiceResponse
			return
		}
		b.hits.Add(1)
		if _, ok := r.Header[hdrCapture]; ok {
			c := r.Header.Clone()
			delete(c, hdrCapture)
			b.captured.Store(&c)
		}
		h := w.Header()
		h[hdrBackend] = []string{"1"}
		if a := r.Header.Get("Authorization"); len(a) > len("Bearer ") && strings.EqualFold(a[:len("Bearer ")], "Bearer ") {
			b.bearer.Add(1)
			h[hdrBearer] = []string{"1"}
		} else {
			h[hdrBearer] = []string{"0"}
		}
		h["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write(body)
	})}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *backend) close() { _ = b.srv.Close() }

// bareProxyFlag re-executes the bench binary as the bare reverse proxy,
// in a process of its own so its CPU can be measured like a gateway's.
// It is not in -h: only the bench passes it.
const bareProxyFlag = "-internal-bare-proxy"

// serveBareProxy is the bare proxy's main: a plain httputil.ReverseProxy
// on listen to backendURL with the gateway's own transport settings
// (proxy.NewTransport) and, like the gateway's, a pool of copy buffers:
// the fair baseline, so that the ratio is the cost of authentication and
// not of ReverseProxy's default 32 KiB allocation per request. With
// carrying (the path of a JSON carried, see carryingTarget) it also sends the
// backend a gateway's headers and the client a gateway's extra answer
// headers, authenticating nothing. It runs until SIGTERM.
func serveBareProxy(listen, backendURL, carrying string) int {
	target, err := url.Parse(backendURL)
	if err != nil {
		os.Stderr.WriteString("bare proxy: bad backend URL\n")
		return 2
	}
	var extra carried
	if carrying != "" {
		data, err := os.ReadFile(carrying)
		if err == nil {
			err = json.Unmarshal(data, &extra)
		}
		if err != nil {
			os.Stderr.WriteString("bare proxy: bad headers to carry\n")
			return 2
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		os.Stderr.WriteString("bare proxy: " + err.Error() + "\n")
		return 1
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			// The gateway's own cookie never reaches the backend: send
			// what the gateway sent, no more.
			delete(pr.Out.Header, "Cookie")
			for k, v := range extra.Request {
				if _, ok := pr.Out.Header[k]; !ok {
					pr.Out.Header[k] = v
				}
			}
		},
		Transport:  proxy.NewTransport(),
		BufferPool: proxy.NewBufferPool(),
	}
	if len(extra.Answer) > 0 {
		rp.ModifyResponse = func(resp *http.Response) error {
			for k, v := range extra.Answer {
				resp.Header[k] = v
			}
			return nil
		}
	}
	// The gateway's own server limits (config.example.yaml's defaults).
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

// carried are the headers a bare-carrying proxy adds: to the request it
// sends the backend, and to the answer it gives the client.
type carried struct {
	Request http.Header `json:"request"`
	Answer  http.Header `json:"answer"`
}
