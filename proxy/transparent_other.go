//go:build !linux

package proxy

import (
	"net"
	"net/netip"
)

// TransparentSupported says ServeTransparent runs on this system: only
// Linux can tell a redirected connection's original destination.
const TransparentSupported = false

func originalDst(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, errNoTransparent }
