package upstreamtest

import "net/http"

// metadata is the provider metadata of OpenID Connect Discovery 1.0 §3 and
// RFC 8414 §2.
type metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	IssParameterSupported             bool     `json:"authorization_response_iss_parameter_supported"`
}

// serveDiscovery serves the same metadata at both well-known paths.
func (s *Server) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	authMethods := []string{ClientSecretBasic, ClientSecretPost, PrivateKeyJWT}
	if s.tls {
		authMethods = append(authMethods, TLSClientAuth)
	}
	authMethods = append(authMethods, None)
	grantTypes := []string{"authorization_code", "refresh_token", "client_credentials"}
	if s.passwordEnabled() {
		grantTypes = append(grantTypes, passwordGrantType)
	}
	responseTypes := []string{"code"}
	if s.implicitEnabled() {
		grantTypes = append(grantTypes, implicitGrantType)
		responseTypes = append(responseTypes, responseToken, responseIDTokenToken)
	}
	responseModes := []string{"query", "fragment", "form_post"}
	if s.noFormPost {
		responseModes = responseModes[:2]
	}
	writeJSON(w, http.StatusOK, metadata{
		Issuer:                            s.URL,
		AuthorizationEndpoint:             s.URL + "/authorize",
		TokenEndpoint:                     s.URL + "/token",
		JWKSURI:                           s.URL + "/jwks",
		UserinfoEndpoint:                  s.URL + "/userinfo",
		EndSessionEndpoint:                s.URL + "/logout",
		RevocationEndpoint:                s.URL + "/revoke",
		IntrospectionEndpoint:             s.URL + "/introspect",
		ResponseTypesSupported:            responseTypes,
		ResponseModesSupported:            responseModes,
		GrantTypesSupported:               grantTypes,
		SubjectTypesSupported:             []string{"public"},
		CodeChallengeMethodsSupported:     []string{"S256"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		TokenEndpointAuthMethodsSupported: authMethods,
		TokenEndpointAuthSigningAlgs:      assertionAlgorithms,
		RevocationAuthMethodsSupported:    authMethods,
		IntrospectionAuthMethodsSupported: authMethods,
		ScopesSupported:                   []string{"openid", "profile", "email", "groups", "offline_access"},
		ClaimsSupported: []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
			"email", "email_verified", "name", "preferred_username", "groups",
		},
		IssParameterSupported: !s.omitIss,
	})
}
