package server

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/egressd/egressd/proxy"
)

// staticHosts answers the names of --static-hosts with their fixed address,
// like /etc/hosts entries that only the proxy sees, and asks next (DNS) for
// every other name. Its answers are only answers: the proxy checks them
// against its deny table exactly as it checks DNS answers.
type staticHosts struct {
	// names maps a lower-case name without a trailing dot to its address.
	names map[string]netip.Addr
	next  proxy.Lookuper
}

// newLookup returns the proxy's resolver for hosts: nil (the proxy's
// default, DNS) when there are none.
func newLookup(hosts map[string]netip.Addr) proxy.Lookuper {
	if len(hosts) == 0 {
		return nil
	}
	return &staticHosts{names: hosts, next: net.DefaultResolver}
}

// LookupNetIP answers a static name with its address when it fits network
// ("ip", "ip4" or "ip6"), and any other name from next.
func (h *staticHosts) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	a, ok := h.names[strings.ToLower(strings.TrimSuffix(host, "."))]
	if !ok {
		return h.next.LookupNetIP(ctx, network, host)
	}
	if (network == "ip4" && !a.Is4()) || (network == "ip6" && !a.Is6()) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{a}, nil
}
