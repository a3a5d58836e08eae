package upstreamtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func ExampleNewServer() {
	srv := upstreamtest.NewServer(upstreamtest.Config{})
	defer srv.Close()

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var md struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(md.Issuer == srv.Issuer(), md.AuthorizationEndpoint == srv.URL+"/authorize")
	// Output: true true
}
