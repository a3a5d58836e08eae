package upstreamtest

import "crypto/rand"

// newSessionID starts a login session of user: the "sid" of the ID tokens
// its grant yields.
func (s *Server) newSessionID(user User) string {
	sid := rand.Text()
	s.sidMu.Lock()
	defer s.sidMu.Unlock()
	if s.sids == nil {
		s.sids = map[string][]string{}
	}
	s.sids[user.Subject] = append(s.sids[user.Subject], sid)
	return sid
}

// SessionIDs returns the login sessions (ID tokens' "sid" claims) of the
// user with subject, oldest first: what a test names in a logout token.
func (s *Server) SessionIDs(subject string) []string {
	s.sidMu.Lock()
	defer s.sidMu.Unlock()
	return append([]string(nil), s.sids[subject]...)
}
