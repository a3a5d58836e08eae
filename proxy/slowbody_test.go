package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// trickle sends head, then one byte of body every interval until the
// gateway answers or closes, and reports the answer's status (0 when the
// connection closed without one), whether the connection then closed, and
// how long it all took.
func trickle(t *testing.T, addr, head string, interval time.Duration) (status int, closed bool, took time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	io.WriteString(conn, head)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(interval):
				if _, err := conn.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	defer close(done)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		status = resp.StatusCode
		io.Copy(io.Discard, resp.Body)
	}
	_, err = br.ReadByte()
	return status, err != nil, time.Since(start)
}

// TestSlowBodyOnEndpoints: a body trickled to the gateway's own endpoints,
// or declared larger than they take and then trickled, cannot hold the
// connection: 408 or 413 and the connection closed within the limit.
func TestSlowBodyOnEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Limits.EndpointBodyTimeout = 500 * time.Millisecond
	}})
	addr := g.Listener.Addr().String()
	for _, tc := range []struct {
		name, path string
		length     string
		want       int
	}{
		{"sign-out form", "/oauth2/sign_out", "1000", http.StatusRequestTimeout},
		{"password form", "/oauth2/login", "1000", http.StatusRequestTimeout},
		{"implicit form post", "/oauth2/callback", "1000", http.StatusRequestTimeout},
		{"back-channel logout", "/oauth2/backchannel_logout", "1000", http.StatusRequestTimeout},
		{"declared too large", "/oauth2/callback", "100000", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head := "POST " + tc.path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + tc.length + "\r\n\r\n"
			status, closed, took := trickle(t, addr, head, 100*time.Millisecond)
			if status != tc.want || !closed || took > 3*time.Second {
				t.Errorf("got %d, closed %t after %s; want %d and the connection closed within the 500ms limit", status, closed, took.Round(time.Millisecond), tc.want)
			}
		})
	}
	// A body that arrives in time is served as before.
	resp, err := http.Post(g.URL+"/oauth2/sign_out", "application/x-www-form-urlencoded", strings.NewReader("rd=%2F"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusRequestTimeout {
		t.Error("a prompt sign-out form got 408")
	}
}

// TestUploadTimeout: with limits.upload_timeout a trickled upload to a
// backend gets 408 within it; without (the default) a slow upload goes
// through.
func TestUploadTimeout(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, "got "+strings.Repeat("x", int(min(n, 3))))
	})
	publicRoute := func(pc *proxy.Config) { pc.Routes[0].PublicPaths = []string{"/"} }
	bounded := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		publicRoute(pc)
		pc.Limits.UploadTimeout = 500 * time.Millisecond
	}})
	open := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) { publicRoute(pc) }})

	addr := bounded.Listener.Addr().String()
	status, closed, took := trickle(t, addr, "POST /upload HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 10000\r\n\r\n", 100*time.Millisecond)
	if status != http.StatusRequestTimeout || !closed || took > 3*time.Second {
		t.Errorf("trickled upload with upload_timeout 500ms: %d, closed %t after %s; want 408 and closed", status, closed, took.Round(time.Millisecond))
	}

	// 12 bytes over 1.2 s: slower than the other gateway allows, fine here.
	addr = open.Listener.Addr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: 12\r\n\r\n")
	for range 12 {
		time.Sleep(100 * time.Millisecond)
		conn.Write([]byte("a"))
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("slow upload without upload_timeout: %v %v, want 200", resp, err)
	}
}
