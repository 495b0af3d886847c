package certs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Limits of a DNS name (RFC 1035 2.3.4), and of the common name field
// (RFC 5280 ub-common-name).
const (
	maxNameLen       = 253
	maxLabelLen      = 63
	maxCommonNameLen = 64
)

// leafName is a normalised host: the cache key and the subject of a leaf.
type leafName struct {
	key string     // lower-case DNS name without trailing dot, or canonical IP text
	ip  netip.Addr // valid when the host is an IP literal
}

// normalizeHost turns what a client asked for (a CONNECT authority, a TLS
// server name) into a leafName. It accepts "name", "name:port", "ip",
// "ip:port", "[ipv6]" and "[ipv6]:port"; everything else, including the
// empty string, wildcards, IPv6 zones and non-ASCII names (IDNs arrive as
// punycode), is refused with ErrInvalidHost.
func normalizeHost(host string) (leafName, error) {
	if host == "" {
		return leafName{}, fmt.Errorf("%w: empty host", ErrInvalidHost)
	}
	// Bounds the work done on hostile input; generous for "[v6]:port".
	if len(host) > maxNameLen+8 {
		return leafName{}, fmt.Errorf("%w: host is %d bytes long", ErrInvalidHost, len(host))
	}
	h, bracketed, err := splitPort(host)
	if err != nil {
		return leafName{}, err
	}
	if addr, ok := parseIP(h, bracketed); ok {
		if addr.Zone() != "" {
			return leafName{}, fmt.Errorf("%w: %q: IPv6 zones cannot be named in a certificate", ErrInvalidHost, host)
		}
		if bracketed && !addr.Is6() {
			return leafName{}, fmt.Errorf("%w: %q: brackets hold only IPv6 addresses", ErrInvalidHost, host)
		}
		addr = addr.Unmap()
		return leafName{key: addr.String(), ip: addr}, nil
	}
	if bracketed {
		return leafName{}, fmt.Errorf("%w: %q: not an IPv6 address in brackets", ErrInvalidHost, host)
	}
	name, err := normalizeDNSName(h)
	if err != nil {
		return leafName{}, fmt.Errorf("%w: %q: %s", ErrInvalidHost, host, err)
	}
	return leafName{key: name}, nil
}

// parseIP parses h as an IP literal. It tries only what could be one (in
// brackets, with a colon, or only digits and dots): a failed ParseAddr
// allocates its error, and this runs on every cache hit.
func parseIP(h string, bracketed bool) (netip.Addr, bool) {
	if !bracketed && strings.IndexByte(h, ':') < 0 {
		for i := 0; i < len(h); i++ {
			if c := h[i]; c != '.' && (c < '0' || c > '9') {
				return netip.Addr{}, false
			}
		}
	}
	addr, err := netip.ParseAddr(h)
	return addr, err == nil
}

// splitPort removes an optional ":port" from host and reports whether the
// host part was in brackets.
func splitPort(host string) (h string, bracketed bool, err error) {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return "", false, fmt.Errorf("%w: %q: missing ']'", ErrInvalidHost, host)
		}
		if rest := host[end+1:]; rest != "" {
			if rest[0] != ':' || !validPort(rest[1:]) {
				return "", false, fmt.Errorf("%w: %q: bad port", ErrInvalidHost, host)
			}
		}
		return host[1:end], true, nil
	}
	switch strings.Count(host, ":") {
	case 0:
		return host, false, nil
	case 1:
		i := strings.IndexByte(host, ':')
		if !validPort(host[i+1:]) {
			return "", false, fmt.Errorf("%w: %q: bad port", ErrInvalidHost, host)
		}
		return host[:i], false, nil
	default:
		return host, false, nil // a bare IPv6 address; parsed by the caller
	}
}

// validPort reports whether p is a decimal port in 1..65535.
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// NormalizeDNSName is a DNS host name as egressd names a host (a leaf's
// subject, a TLS server name taken as the host): lower case, no trailing
// dot, ASCII letters, digits, '-' and '_' in labels of 1 to 63 bytes, at
// most 253 bytes, the last label not all digits (so no IPv4 literal);
// ok is false for anything else.
func NormalizeDNSName(h string) (name string, ok bool) {
	name, err := normalizeDNSName(h)
	return name, err == nil
}

// normalizeDNSName lowercases h, drops one trailing dot, and checks that it
// is a DNS name a certificate can carry: labels of letters, digits, '-' and
// '_', 1 to 63 bytes each, not starting or ending with '-', at most 253 bytes
// in all, and a last label that is not all digits (so "127.1" is not taken
// for a name).
func normalizeDNSName(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("empty name")
	}
	if len(h) > maxNameLen {
		return "", fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	labelStart, allDigits := 0, true
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			label := h[labelStart:i]
			switch {
			case len(label) == 0:
				return "", errors.New("empty label")
			case len(label) > maxLabelLen:
				return "", fmt.Errorf("label longer than %d bytes", maxLabelLen)
			case label[0] == '-' || label[len(label)-1] == '-':
				return "", errors.New("label starts or ends with '-'")
			}
			if i == len(h) && allDigits {
				return "", errors.New("last label is all digits")
			}
			labelStart, allDigits = i+1, true
			continue
		}
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_':
			allDigits = false
		case '0' <= c && c <= '9':
		default:
			return "", fmt.Errorf("byte %q not allowed in a host name", c)
		}
	}
	// Lowercase only now that h is known to be ASCII: on other input
	// strings.ToLower would turn the Kelvin sign U+212A into 'k' and let a
	// non-ASCII name pass as ASCII. It allocates only when h has upper case.
	return strings.ToLower(h), nil
}
