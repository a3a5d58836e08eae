package upstreamtest_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestSetFault: each kind of fault answers as documented, is counted, and
// the zero Fault restores normal service.
func TestSetFault(t *testing.T) {
	srv := upstreamtest.NewServer(upstreamtest.Config{})
	defer srv.Close()
	get := func() (*http.Response, string, error) {
		resp, err := srv.HTTPClient().Get(srv.URL + "/jwks")
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), nil
	}
	srv.SetFault("jwks", upstreamtest.Fault{Status: 302, Header: http.Header{"Location": {"http://127.0.0.1:1/elsewhere"}}})
	if resp, _, err := get(); err != nil || resp.StatusCode != 302 || resp.Header.Get("Location") != "http://127.0.0.1:1/elsewhere" {
		t.Fatalf("redirect fault: %v %v", resp, err)
	}
	srv.SetFault("jwks", upstreamtest.Fault{Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: "<html>"})
	if resp, body, err := get(); err != nil || resp.StatusCode != 200 || body != "<html>" || resp.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("body fault: %v %q %v", resp, body, err)
	}
	srv.SetFault("jwks", upstreamtest.Fault{Drop: true})
	if _, _, err := get(); err == nil {
		t.Fatal("drop fault: got an answer, want a reset connection")
	}
	srv.SetFault("jwks", upstreamtest.Fault{Delay: 200 * time.Millisecond})
	start := time.Now()
	if resp, body, err := get(); err != nil || resp.StatusCode != 200 || time.Since(start) < 200*time.Millisecond || len(body) < 100 {
		t.Fatalf("delay fault: %v after %v, want the JWKS after 200ms", err, time.Since(start))
	}
	srv.SetFault("jwks", upstreamtest.Fault{})
	if resp, _, err := get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the zero Fault: %v %v", resp, err)
	}
	if n := srv.Count("jwks"); n != 5 {
		t.Errorf("jwks count %d, want 5 (faulty requests count)", n)
	}
	// A token request answered by a fault still counts its grant.
	srv.SetFault("token", upstreamtest.Fault{Status: 500, Body: "oops"})
	resp, err := srv.HTTPClient().PostForm(srv.URL+"/token", map[string][]string{"grant_type": {"client_credentials"}})
	if err != nil || resp.StatusCode != 500 {
		t.Fatalf("token fault: %v %v", resp, err)
	}
	resp.Body.Close()
	if n := srv.GrantCount("client_credentials"); n != 1 {
		t.Errorf("GrantCount under a fault: %d, want 1", n)
	}
}
