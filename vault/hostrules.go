package vault

import (
	"net/netip"
	"slices"
	"strings"
)

// A tenant's egress rules (Settings.EgressAllowHosts, EgressDenyHosts) are
// of two kinds, and each kind is checked where it can be:
//
// A name rule (an exact host name, "*.suffix", or an IP address written as
// the host) is matched against the host the sandbox names: the CONNECT
// host, or the host of a request's URL. It stops the names it lists and
// nothing else: another name of the same server (an alias, a CNAME, a
// name of the sandbox's own DNS zone pointed at the server's address, an
// IP literal) is a different host and passes, and so does any host the
// server itself routes to (a shared CDN address answers for thousands of
// names). Inside a pass-through tunnel egressd sees only the TLS
// ClientHello: the proxy refuses a server name (SNI) that differs from the
// CONNECT host (sni_mismatch), but the HTTP Host header inside TLS is not
// visible there, so a front that routes by Host rather than by SNI is
// stopped only where egressd terminates TLS (MITM).
//
// An address rule (a CIDR, "203.0.113.0/24", or an IP address, taken as a
// one-address range) is matched against the address the proxy actually
// connects to, after DNS: it stops every name and literal that leads to
// those addresses, whichever way the sandbox spells the host. It cannot
// tell apart the names served from one address: an allowed range of a
// CDN allows every site on it, a denied one denies them all.
//
// A deny of either kind wins. When the allow list is not empty, a host is
// allowed when a name rule names it, or when the address dialed is in an
// allowed range.

// MaxEgressRules bounds each of a tenant's egress rule lists.
const MaxEgressRules = MaxAllowedHosts

// normalizeEgressRules checks egress_allow_hosts or egress_deny_hosts:
// name rules as NormalizeHostPattern takes them, and CIDRs (the address
// part masked, an IPv4-mapped range written as IPv4).
func normalizeEgressRules(field string, in []string) ([]string, error) {
	if len(in) > MaxEgressRules {
		return nil, invalid(field, "at most %d entries", MaxEgressRules)
	}
	out := make([]string, 0, len(in))
	for _, h := range in {
		var n string
		if strings.Contains(h, "/") {
			p, ok := normalizePrefix(h)
			if !ok {
				return nil, invalid(field, "%q is not a CIDR range (203.0.113.0/24, 2001:db8::/32)", h)
			}
			n = p.String()
		} else {
			var ok bool
			if n, ok = NormalizeHostPattern(h); !ok {
				return nil, invalid(field, "%q is not a host name, IP address, *.suffix or CIDR range", h)
			}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// normalizePrefix parses a CIDR rule: no zone, the address masked, an
// IPv4-mapped IPv6 range of at least /96 written as the IPv4 range it maps.
func normalizePrefix(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || p.Addr().Zone() != "" {
		return netip.Prefix{}, false
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// ruleAddr returns the range an address rule covers; false for a name rule.
func ruleAddr(rule string) (netip.Prefix, bool) {
	if strings.Contains(rule, "/") {
		p, err := netip.ParsePrefix(rule)
		return p, err == nil
	}
	if a, err := netip.ParseAddr(rule); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// nameRules are the rules of list that name hosts (CIDRs left out).
func nameRules(list []string) []string {
	out := make([]string, 0, len(list))
	for _, r := range list {
		if !strings.Contains(r, "/") {
			out = append(out, r)
		}
	}
	return out
}

// HasAddressRules reports whether the settings hold an address rule (a
// CIDR or an IP address) in either list: the proxy then checks every
// address it dials for this tenant with EgressAddrAllowed.
func (s *Settings) HasAddressRules() bool {
	for _, r := range slices.Concat(s.EgressAllowHosts, s.EgressDenyHosts) {
		if _, ok := ruleAddr(r); ok {
			return true
		}
	}
	return false
}

// AddressRulesKey is a string that changes whenever the address rules do
// ("" when there are none); connections dialed under one set of rules are
// not reused under another.
func (s *Settings) AddressRulesKey() string {
	var b strings.Builder
	for i, list := range [][]string{s.EgressAllowHosts, s.EgressDenyHosts} {
		for _, r := range list {
			if p, ok := ruleAddr(r); ok {
				b.WriteString([]string{"+", "-"}[i] + p.String() + " ")
			}
		}
	}
	return b.String()
}

// EgressAllowed reports whether the tenant's name rules let a sandbox
// reach host (a name or an IP literal). Address rules are not applied
// here, but an allow list that holds one lets a host it does not name
// through to EgressAddrAllowed, which decides by the address dialed.
func (s *Settings) EgressAllowed(host string) bool {
	if deny := nameRules(s.EgressDenyHosts); len(deny) > 0 && HostAllowed(deny, host) {
		return false
	}
	if len(s.EgressAllowHosts) == 0 {
		return true
	}
	allow := nameRules(s.EgressAllowHosts)
	if len(allow) > 0 && HostAllowed(allow, host) {
		return true
	}
	for _, r := range s.EgressAllowHosts {
		if _, ok := ruleAddr(r); ok {
			return true // the address decides
		}
	}
	return false
}

// EgressAddrAllowed reports whether the tenant's address rules let a
// connection for host (as the sandbox named it) go to addr: no denied
// range holds addr, and, when the allow list is not empty, a name rule
// allows host or an allowed range holds addr.
func (s *Settings) EgressAddrAllowed(host string, addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, r := range s.EgressDenyHosts {
		if p, ok := ruleAddr(r); ok && p.Contains(addr) {
			return false
		}
	}
	if len(s.EgressAllowHosts) == 0 {
		return true
	}
	if allow := nameRules(s.EgressAllowHosts); len(allow) > 0 && HostAllowed(allow, host) {
		return true
	}
	for _, r := range s.EgressAllowHosts {
		if p, ok := ruleAddr(r); ok && p.Contains(addr) {
			return true
		}
	}
	return false
}
