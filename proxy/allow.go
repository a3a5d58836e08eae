package proxy

import (
	"strings"

	"github.com/authgate/authgate/session"
)

// permits applies the route's policy to a session (see Allow).
func (a *Allow) permits(s *session.Session) bool {
	if len(a.Emails) > 0 || len(a.EmailDomains) > 0 {
		if !a.emailAllowed(s) {
			return false
		}
	}
	if len(a.Groups) > 0 {
		for _, g := range s.Groups {
			for _, want := range a.Groups {
				if g == want {
					return true
				}
			}
		}
		return false
	}
	return true
}

// emailAllowed needs a verified address with exactly one "@"
// (SECURITY.md 10: "a@evil.com@corp.com" is no address at corp.com).
func (a *Allow) emailAllowed(s *session.Session) bool {
	if !s.EmailVerified || strings.Count(s.Email, "@") != 1 {
		return false
	}
	for _, e := range a.Emails {
		if strings.EqualFold(e, s.Email) {
			return true
		}
	}
	_, domain, _ := strings.Cut(s.Email, "@")
	for _, d := range a.EmailDomains {
		if d == "*" || strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}
