package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies is the parsed trusted_proxies list (SECURITY.md 24): only
// a request whose immediate peer is in it may say, in X-Forwarded-For,
// -Host and -Proto, who the client is and what it asked for.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads CIDRs ("10.0.0.0/8") and single addresses.
func parseTrustedProxies(list []string) (trustedProxies, error) {
	var out trustedProxies
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("trusted_proxies[%d]: %q is not an address or CIDR such as 10.0.0.0/8", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8: peers are unmapped too.
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (tp trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range tp {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the connection's other end.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// fromTrustedProxy reports whether r arrived through a trusted proxy.
func (tp trustedProxies) fromTrustedProxy(r *http.Request) bool {
	return len(tp) > 0 && tp.contains(peerAddr(r))
}

// clientAddr is the address r came from: the peer, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not one
// (entries left of it are the client's own claims and prove nothing). A
// malformed entry ends the walk at the last good hop.
func (tp trustedProxies) clientAddr(r *http.Request) netip.Addr {
	addr := peerAddr(r)
	if len(tp) == 0 || !tp.contains(addr) {
		return addr
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for line != "" {
			var hop string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				hop, line = line[j+1:], line[:j]
			} else {
				hop, line = line, ""
			}
			a, ok := parseHop(strings.TrimSpace(hop))
			if !ok {
				return addr
			}
			addr = a
			if !tp.contains(a) {
				return a
			}
		}
	}
	return addr
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port, IPv6 possibly in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}
