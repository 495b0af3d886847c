package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// deniedPrefixes are never dialed unless Config.AllowPrivate opens them.
// Go's IsPrivate and friends miss several of these; the table is explicit.
// An IPv4-mapped address (::ffff:a.b.c.d) is classified as the IPv4
// address it maps, so ::ffff:127.0.0.1 is loopback and a mapped public
// address is public.
var deniedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this" network
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		"::/128",          // unspecified
		"::1/128",         // loopback
		"::/96",           // IPv4-compatible (deprecated), ::127.0.0.1 and the like
		"::ffff:0:0:0/96", // IPv4-translated (SIIT, deprecated)
		"64:ff9b::/96",    // NAT64
		"64:ff9b:1::/48",  // local NAT64
		"100::/64",        // discard
		"2001::/32",       // Teredo
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4
		"fc00::/7",        // unique local, incl. fd00:ec2::254 metadata
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// DenyError is a refused destination.
type DenyError struct {
	Reason Reason
	Addr   string
}

func (e *DenyError) Error() string { return fmt.Sprintf("egress to %s refused: %s", e.Addr, e.Reason) }

// policy decides which addresses may be dialed.
type policy struct {
	allow []netip.Prefix
	own   []netip.AddrPort
	// local are this host's interface addresses: a listener on the
	// unspecified address is reachable on each of them.
	local []netip.Addr
}

func localAddrs() []netip.Addr {
	var out []netip.Addr
	as, _ := net.InterfaceAddrs()
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

func (p *policy) isOwn(o netip.AddrPort, addr netip.Addr) bool {
	if o.Addr().Unmap() == addr || addr.IsLoopback() {
		return true
	}
	return o.Addr().IsUnspecified() && slices.Contains(p.local, addr)
}

// check classifies one address that is about to be dialed.
func (p *policy) check(ap netip.AddrPort) Reason {
	addr := ap.Addr().Unmap().WithZone("")
	// Connecting to the unspecified address reaches this host itself,
	// whatever AllowPrivate opens.
	if addr.IsUnspecified() {
		return ReasonPrivateAddress
	}
	for _, o := range p.own {
		if o.Port() == ap.Port() && p.isOwn(o, addr) {
			return ReasonOwnListener
		}
	}
	for _, pre := range p.allow {
		if pre.Contains(addr) {
			return ReasonNone
		}
	}
	for _, pre := range deniedPrefixes {
		if pre.Contains(addr) {
			return ReasonPrivateAddress
		}
	}
	return ReasonNone
}

// Lookuper resolves host names; *net.Resolver implements it.
type Lookuper interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// dialer dials only addresses the policy allows: the name is resolved once,
// every address is checked, and the checked address is the one dialed (the
// socket's Control hook checks it again), so DNS rebinding cannot slip a
// private address in between.
type dialer struct {
	policy  *policy
	lookup  Lookuper
	timeout time.Duration
	// tenant applies the address rules of the tenant the dial in ctx is
	// for (addrrules.go) to an address host resolved to; nil applies none.
	tenant func(ctx context.Context, host string, addr netip.Addr) Reason
}

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", address)
	}
	allowed, deny := d.allowed(ctx, host, uint16(port))
	var lastErr error
	for _, ap := range allowed {
		nd := net.Dialer{Timeout: d.timeout, KeepAlive: 30 * time.Second, ControlContext: d.control}
		c, err := nd.DialContext(ctx, network, ap.String())
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, deny
}

// allowed resolves host once and returns the addresses the policy lets us
// dial, in the resolver's order; with none, the first refusal says why.
func (d *dialer) allowed(ctx context.Context, host string, port uint16) ([]netip.AddrPort, *DenyError) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		addrs, err = d.lookup.LookupNetIP(ctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			return nil, &DenyError{Reason: ReasonUnresolvable, Addr: host}
		}
	}
	var out []netip.AddrPort
	var firstDeny *DenyError
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, port)
		r := d.policy.check(ap)
		if r == ReasonNone && d.tenant != nil {
			r = d.tenant(ctx, host, a)
		}
		if r != ReasonNone {
			if firstDeny == nil {
				firstDeny = &DenyError{Reason: r, Addr: ap.String()}
			}
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, firstDeny
	}
	return out, nil
}

// control re-checks the address the socket is about to connect to. The
// tenant's rules need no second look: the address dialed is the literal
// allowed checked.
func (d *dialer) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &DenyError{Reason: ReasonPrivateAddress, Addr: address}
	}
	if r := d.policy.check(ap); r != ReasonNone {
		return &DenyError{Reason: r, Addr: address}
	}
	return nil
}

// denyReason extracts a DenyError's reason from a dial error chain.
func denyReason(err error) Reason {
	var de *DenyError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ReasonNone
}
