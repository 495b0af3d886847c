package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ParseStaticHosts reads --static-hosts: NAME=ADDR entries separated by
// commas, such as "api.internal=10.1.2.3,db.internal=fd00::5". NAME is a
// DNS host name (letters, digits and hyphens in dot-separated labels; no
// wildcard, no IP literal), returned lower-cased without a trailing dot;
// ADDR is an IPv4 or IPv6 address without a zone. A name may appear only
// once. Spaces around an entry and empty entries are ignored; an empty
// list gives a nil map.
func ParseStaticHosts(list string) (map[string]netip.Addr, error) {
	var hosts map[string]netip.Addr
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		name, addr, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("--static-hosts %q: want NAME=ADDR, such as api.internal=10.1.2.3", e)
		}
		name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
		if err := checkHostName(name, false); err != nil {
			return nil, fmt.Errorf("--static-hosts %q: name: %w", e, err)
		}
		a, err := netip.ParseAddr(strings.TrimSpace(addr))
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("--static-hosts %q: want an IPv4 or IPv6 address after =, without a zone", e)
		}
		if _, dup := hosts[name]; dup {
			return nil, fmt.Errorf("--static-hosts: %s is given twice", name)
		}
		if hosts == nil {
			hosts = map[string]netip.Addr{}
		}
		hosts[name] = a.Unmap()
	}
	return hosts, nil
}

// ParseNoProxy reads --sandbox-no-proxy: entries separated by commas, each
// a host name, a .domain (the domain and every name under it), an IP
// address or a CIDR. Host names and domains are lower-cased; underscores
// are allowed in them, as in container names. Spaces around an entry and
// empty entries are ignored, repeated entries kept once; an empty list
// gives nil.
func ParseNoProxy(list string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		entry, err := noProxyEntry(e)
		if err != nil {
			return nil, fmt.Errorf("--sandbox-no-proxy %q: %w", e, err)
		}
		if !slices.Contains(out, entry) {
			out = append(out, entry)
		}
	}
	return out, nil
}

// noProxyEntry checks one NO_PROXY entry and returns its canonical form.
func noProxyEntry(e string) (string, error) {
	if p, err := netip.ParsePrefix(e); err == nil {
		if p.Addr().Zone() != "" {
			return "", errors.New("want a CIDR without a zone")
		}
		return p.Masked().String(), nil
	}
	if a, err := netip.ParseAddr(e); err == nil {
		if a.Zone() != "" {
			return "", errors.New("want an IP address without a zone")
		}
		return a.String(), nil
	}
	e = strings.ToLower(e)
	if err := checkHostName(strings.TrimPrefix(e, "."), true); err != nil {
		return "", fmt.Errorf("want a host name, .domain, IP address or CIDR: %w", err)
	}
	return e, nil
}

// checkHostName accepts a lower-case DNS host name: dot-separated labels of
// 1 to 63 letters, digits and hyphens (and underscores when underscore is
// true), no label starting or ending with a hyphen, at most 253 bytes, and
// a last label that is not all digits (so no IP literal passes).
func checkHostName(name string, underscore bool) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > 253 {
		return errors.New("longer than 253 bytes")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New("each dot-separated label must have 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("a label must not start or end with a hyphen")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && (c != '_' || !underscore) {
				return fmt.Errorf("character %q is not allowed in a host name", c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("an IP address or a name ending in a numeric label")
	}
	return nil
}
