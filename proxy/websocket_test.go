package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upgradeBackend answers a websocket upgrade with 101 and then echoes bytes,
// recording the Upgrade header it saw and the identity it was given.
func upgradeBackend(seen chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Upgrade") + "|" + r.Header.Get("X-Forwarded-User")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(brw, buf); err == nil {
			conn.Write(buf)
		}
	})
}

func rawRequest(t *testing.T, addr, req string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, req)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return conn, br, resp
}

func TestWebsocketPassesThroughAfterLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	seen := make(chan string, 10)
	e.backend.Config.Handler = upgradeBackend(seen)
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	<-seen
	cookie := "_authgate=" + b.cookie(t, g.URL, "_authgate")
	addr := g.Listener.Addr().String()

	conn, br, resp := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: "+cookie+"\r\n\r\n")
	defer conn.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade: got %d, want 101", resp.StatusCode)
	}
	if got := <-seen; got != "websocket|user-alice" {
		t.Errorf("backend saw %q, want the upgrade with the user's identity", got)
	}
	io.WriteString(conn, "hello")
	echo := make([]byte, 5)
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "hello" {
		t.Errorf("echo through the upgraded connection: got %q, %v", echo, err)
	}

	// No session: no upgrade reaches the backend.
	conn2, _, resp := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	conn2.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade without a session: got %d, want 401", resp.StatusCode)
	}
	// h2c is not an upgrade the gateway passes on (SECURITY.md 28).
	conn3, _, resp := rawRequest(t, addr, "GET /h2 HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nCookie: "+cookie+"\r\n\r\n")
	conn3.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("h2c request: got %d, want a plain 200", resp.StatusCode)
	}
	if got := <-seen; got != "|user-alice" {
		t.Errorf("backend saw Upgrade %q for h2c, want none", got)
	}
}

func TestCrossSiteWebsocketRefused(t *testing.T) {
	// Cross-site websocket hijacking: a page on another site opens a
	// websocket to the gateway, and the browser adds the session cookie.
	e := newEnv(t, envOptions{})
	seen := make(chan string, 10)
	e.backend.Config.Handler = upgradeBackend(seen)
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	<-seen
	cookie := "_authgate=" + b.cookie(t, g.URL, "_authgate")
	addr := g.Listener.Addr().String()
	for _, tc := range []struct {
		name, headers string
		want          int
	}{
		{"foreign origin", "Origin: https://evil.com\r\n", http.StatusForbidden},
		{"sec-fetch cross-site", "Origin: https://evil.com\r\nSec-Fetch-Site: cross-site\r\n", http.StatusForbidden},
		{"same origin", "Origin: " + g.URL + "\r\n", http.StatusSwitchingProtocols},
	} {
		conn, _, resp := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+tc.headers+"Cookie: "+cookie+"\r\n\r\n")
		conn.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusSwitchingProtocols {
			<-seen
		}
	}
	select {
	case got := <-seen:
		t.Errorf("a refused handshake reached the backend: %q", got)
	default:
	}
}
