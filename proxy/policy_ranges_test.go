package proxy

import (
	"context"
	"net/netip"
	"testing"
)

// Regressions (issue 13, 9): the deny table lacked ::/96 (IPv4-compatible
// IPv6), and an IPv4-mapped answer (an /etc/hosts line "::ffff:1.2.3.4")
// was refused as private even for a public address.
func TestPolicyIPv4InIPv6Forms(t *testing.T) {
	p := &policy{}
	cases := []struct {
		addr string
		want Reason
	}{
		{"::ffff:8.8.8.8", ReasonNone},                   // mapped public: public
		{"::ffff:1.1.1.1", ReasonNone},                   // mapped public: public
		{"::ffff:127.0.0.1", ReasonPrivateAddress},       // mapped loopback
		{"::ffff:10.1.2.3", ReasonPrivateAddress},        // mapped private
		{"::ffff:169.254.169.254", ReasonPrivateAddress}, // mapped metadata
		{"::ffff:0.0.0.0", ReasonPrivateAddress},         // mapped unspecified
		{"::127.0.0.1", ReasonPrivateAddress},            // IPv4-compatible loopback
		{"::169.254.169.254", ReasonPrivateAddress},      // IPv4-compatible metadata
		{"::8.8.8.8", ReasonPrivateAddress},              // IPv4-compatible: deprecated, never dialed
		{"::ffff:0:7f00:1", ReasonPrivateAddress},        // IPv4-translated loopback
		{"8.8.8.8", ReasonNone},
		{"2606:4700::1111", ReasonNone},
	}
	for _, c := range cases {
		if got := p.check(netip.AddrPortFrom(netip.MustParseAddr(c.addr), 443)); got != c.want {
			t.Errorf("%s: %v, want %v", c.addr, got, c.want)
		}
	}
}

// An /etc/hosts answer in IPv4-mapped form for a public address is dialed.
func TestDialerMappedHostsAnswer(t *testing.T) {
	d := &dialer{policy: &policy{}, lookup: loopbackLookup{"hosts.test": netip.MustParseAddr("::ffff:203.0.114.5"), "lo.test": netip.MustParseAddr("::ffff:127.0.0.1")}}
	got, deny := d.allowed(context.Background(), "hosts.test", 443)
	if deny != nil || len(got) != 1 {
		t.Fatalf("hosts.test: %v %v, want its address", got, deny)
	}
	if _, deny := d.allowed(context.Background(), "lo.test", 443); deny == nil || deny.Reason != ReasonPrivateAddress {
		t.Fatalf("lo.test: %v, want private_address", deny)
	}
}
