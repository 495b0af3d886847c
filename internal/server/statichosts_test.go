package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
)

// dnsAnswers stands for DNS behind the static names: it answers every
// name it knows and records what it was asked.
type dnsAnswers struct {
	asked []string
	known map[string][]netip.Addr
}

func (d *dnsAnswers) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	d.asked = append(d.asked, network+" "+host)
	if a, ok := d.known[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestStaticHostsLookup(t *testing.T) {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	dns := &dnsAnswers{known: map[string][]netip.Addr{"example.com": {netip.MustParseAddr("93.184.215.14")}}}
	h := &staticHosts{names: map[string]netip.Addr{"upstream.test": v4, "v6.test": v6}, next: dns}
	for _, c := range []struct {
		network, host string
		want          []netip.Addr
		notFound      bool
	}{
		{"ip", "upstream.test", []netip.Addr{v4}, false},
		{"ip", "UPSTREAM.Test.", []netip.Addr{v4}, false}, // case and a trailing dot do not matter
		{"ip4", "upstream.test", []netip.Addr{v4}, false},
		{"ip6", "upstream.test", nil, true}, // no IPv6 address for it
		{"ip6", "v6.test", []netip.Addr{v6}, false},
		{"ip", "example.com", []netip.Addr{netip.MustParseAddr("93.184.215.14")}, false}, // from DNS
		{"ip", "sub.upstream.test", nil, true},                                           // no wildcard: DNS says no
	} {
		got, err := h.LookupNetIP(t.Context(), c.network, c.host)
		var de *net.DNSError
		if c.notFound != (errors.As(err, &de) && de.IsNotFound) || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %s: %v, %v; want %v (not found %v)", c.network, c.host, got, err, c.want, c.notFound)
		}
	}
	if want := []string{"ip example.com", "ip sub.upstream.test"}; !reflect.DeepEqual(dns.asked, want) {
		t.Errorf("DNS was asked %q, want %q", dns.asked, want)
	}
	if newLookup(nil) != nil {
		t.Error("no static hosts should leave the proxy's default resolver")
	}
}
