//go:build linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TransparentSupported says ServeTransparent runs on this system.
const TransparentSupported = true

// The getsockopt options that read a redirected connection's original
// destination from conntrack: SO_ORIGINAL_DST (linux/netfilter_ipv4.h)
// and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h), both 80.
// x/sys/unix does not name them.
const (
	soOriginalDst     = 80
	ip6tSoOriginalDst = 80
)

// originalDst reads the destination a redirected TCP connection was
// addressed to before the kernel's NAT turned it to the listener. A
// connection without a conntrack entry (none was redirected or tracked)
// is an error.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	remote, ok := addrPortOf(tc.RemoteAddr())
	if !ok {
		return netip.AddrPort{}, errors.New("no remote address")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var out netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if remote.Addr().Is4() {
			// struct sockaddr_in in the 16 bytes of an ipv6_mreq:
			// family, port (network order), address.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
			if err != nil {
				serr = err
				return
			}
			b := m.Multiaddr
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), uint16(b[2])<<8|uint16(b[3]))
			return
		}
		// struct sockaddr_in6 in the first bytes of an ip6_mtuinfo.
		info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err != nil {
			serr = err
			return
		}
		port := (*[2]byte)(unsafe.Pointer(&info.Addr.Port))
		out = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr).Unmap(), uint16(port[0])<<8|uint16(port[1]))
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, serr
	}
	return out, nil
}
