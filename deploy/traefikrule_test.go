package deploy

import (
	"fmt"
	"strings"
	"testing"
)

// rule is a parsed Traefik router rule (Host, Path, PathPrefix combined
// with &&, ||, ! and parentheses): enough to ask whether a request for a
// host and path would take the route.
type rule struct {
	match func(host, path string) bool
	// Hosts are the host names its Host matchers name.
	Hosts []string
}

// parseRule parses a rule; a matcher other than Host, Path and PathPrefix
// is an error, so that the test never guesses what a route covers.
func parseRule(src string) (*rule, error) {
	p := &ruleParser{src: src}
	r := &rule{}
	f, err := p.or(r)
	if err != nil {
		return nil, err
	}
	if p.skipSpace(); p.pos != len(p.src) {
		return nil, fmt.Errorf("unexpected %q at %d", p.src[p.pos:], p.pos)
	}
	r.match = f
	return r, nil
}

type matcher = func(host, path string) bool

type ruleParser struct {
	src string
	pos int
}

func (p *ruleParser) skipSpace() {
	for p.pos < len(p.src) && strings.ContainsRune(" \t\r\n", rune(p.src[p.pos])) {
		p.pos++
	}
}

func (p *ruleParser) eat(tok string) bool {
	p.skipSpace()
	if strings.HasPrefix(p.src[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func (p *ruleParser) or(r *rule) (matcher, error) {
	left, err := p.and(r)
	if err != nil {
		return nil, err
	}
	for p.eat("||") {
		right, err := p.and(r)
		if err != nil {
			return nil, err
		}
		l := left
		left = func(h, path string) bool { return l(h, path) || right(h, path) }
	}
	return left, nil
}

func (p *ruleParser) and(r *rule) (matcher, error) {
	left, err := p.unary(r)
	if err != nil {
		return nil, err
	}
	for p.eat("&&") {
		right, err := p.unary(r)
		if err != nil {
			return nil, err
		}
		l := left
		left = func(h, path string) bool { return l(h, path) && right(h, path) }
	}
	return left, nil
}

func (p *ruleParser) unary(r *rule) (matcher, error) {
	if p.eat("!") {
		inner, err := p.unary(r)
		if err != nil {
			return nil, err
		}
		return func(h, path string) bool { return !inner(h, path) }, nil
	}
	if p.eat("(") {
		inner, err := p.or(r)
		if err != nil {
			return nil, err
		}
		if !p.eat(")") {
			return nil, fmt.Errorf("missing ) at %d", p.pos)
		}
		return inner, nil
	}
	p.skipSpace()
	start := p.pos
	for p.pos < len(p.src) && (p.src[p.pos] >= 'A' && p.src[p.pos] <= 'Z' || p.src[p.pos] >= 'a' && p.src[p.pos] <= 'z') {
		p.pos++
	}
	name := p.src[start:p.pos]
	if !p.eat("(") {
		return nil, fmt.Errorf("want a matcher at %d", start)
	}
	var args []string
	for {
		if !p.eat("`") {
			return nil, fmt.Errorf("%s: want a `quoted` argument at %d", name, p.pos)
		}
		end := strings.IndexByte(p.src[p.pos:], '`')
		if end < 0 {
			return nil, fmt.Errorf("%s: unterminated argument", name)
		}
		args = append(args, p.src[p.pos:p.pos+end])
		p.pos += end + 1
		if !p.eat(",") {
			break
		}
	}
	if !p.eat(")") {
		return nil, fmt.Errorf("%s: missing ) at %d", name, p.pos)
	}
	switch name {
	case "Host":
		r.Hosts = append(r.Hosts, args...)
		return func(h, _ string) bool {
			for _, a := range args {
				if strings.EqualFold(a, h) {
					return true
				}
			}
			return false
		}, nil
	case "Path":
		return func(_, path string) bool {
			for _, a := range args {
				if path == a {
					return true
				}
			}
			return false
		}, nil
	case "PathPrefix":
		// A plain string prefix, as Traefik matches it: PathPrefix(`/oauth2/a`)
		// covers /oauth2/auth.
		return func(_, path string) bool {
			for _, a := range args {
				if strings.HasPrefix(path, a) {
					return true
				}
			}
			return false
		}, nil
	default:
		return nil, fmt.Errorf("matcher %s is not understood by this test (Host, Path, PathPrefix only)", name)
	}
}

func TestParseRule(t *testing.T) {
	tests := []struct {
		rule       string
		host, path string
		want       bool
	}{
		{"Host(`a.example.com`)", "a.example.com", "/oauth2/auth", true},
		{"Host(`a.example.com`)", "b.example.com", "/", false},
		{"Host(`a.example.com`) && Path(`/oauth2/start`)", "a.example.com", "/oauth2/auth", false},
		{"Host(`a.example.com`) && Path(`/oauth2/start`)", "a.example.com", "/oauth2/start", true},
		{"Host(`a`) && (Path(`/x`) || PathPrefix(`/oauth2/a`))", "a", "/oauth2/auth", true},
		{"Host(`a`) && !PathPrefix(`/oauth2/auth`)", "a", "/oauth2/auth", false},
		{"Host(`a`) || Host(`b`)", "B", "/", true},
	}
	for _, tt := range tests {
		r, err := parseRule(tt.rule)
		if err != nil {
			t.Fatalf("parseRule(%q): %v", tt.rule, err)
		}
		if got := r.match(tt.host, tt.path); got != tt.want {
			t.Errorf("%q on %s%s: got %v, want %v", tt.rule, tt.host, tt.path, got, tt.want)
		}
	}
	for _, bad := range []string{"HostRegexp(`.*`)", "Host(`a`) &&", "Host(a)", "Host(`a`) Path(`/`)"} {
		if _, err := parseRule(bad); err == nil {
			t.Errorf("parseRule(%q): got no error, want one", bad)
		}
	}
}
