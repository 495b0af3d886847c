package vault

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egressd/egressd/vault/storage"
)

// A sandbox's source_addrs are the addresses its traffic comes from, as
// the transparent listener sees them (proxy/transparent.go): a connection
// the kernel redirected to egressd carries no credentials, so its source
// address is what says which sandbox sent it. They are node-wide: no two
// sandboxes of any tenants may claim overlapping addresses, or one
// sandbox's traffic could be taken for another's. A write that would
// overlap is refused (ErrConflict) inside the write's own transaction,
// which every backend serializes with the others (storage.Backend), so two
// racing claims cannot both commit. Each claim must also lie inside its
// tenant's source_prefixes, which only the operator sets
// (sourceprefixes.go): refused (ErrForbidden) in the same transaction.

// MaxSourceAddrs bounds the entries of one sandbox's source_addrs.
const MaxSourceAddrs = 64

// The shortest prefixes source_addrs may hold: a sandbox claims its own
// addresses, not a whole network (a /0 would take every unregistered
// source's traffic for its own and block every other claim).
const (
	MinSourcePrefixV4 = 16
	MinSourcePrefixV6 = 48
)

// bSourceAddrs indexes every claimed prefix: its canonical text → tenant
// \0 sandbox id. It holds as many keys as prefixes are claimed on the
// store, which the overlap check and the proxy's index read whole.
var bSourceAddrs = []byte("sandbox_source_addrs")

// NormalizeSourceAddrs checks and normalises a source_addrs list: each
// entry an IPv4 or IPv6 address (a single address, written bare) or a
// CIDR prefix without host bits set, no zone, IPv4-mapped IPv6 written as
// IPv4; no unspecified, multicast or over-broad entry; at most
// MaxSourceAddrs entries, none overlapping another. The result is sorted
// and without duplicates; nil for an empty list.
func NormalizeSourceAddrs(in []string) ([]string, error) {
	return normalizePrefixes("source_addrs", in, MaxSourceAddrs, MinSourcePrefixV4, MinSourcePrefixV6)
}

// normalizePrefixes is NormalizeSourceAddrs for the list field, of at
// most max entries, none broader than /min4 (IPv4) or /min6 (IPv6).
func normalizePrefixes(field string, in []string, max, min4, min6 int) ([]string, error) {
	if len(in) > max {
		return nil, invalid(field, "at most %d entries, got %d", max, len(in))
	}
	ps := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		p, err := parsePrefixEntry(s, min4, min6)
		if err != nil {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "%s", err.Error())
		}
		ps = append(ps, p)
	}
	slices.SortFunc(ps, comparePrefix)
	ps = slices.Compact(ps)
	for i := 1; i < len(ps); i++ {
		if ps[i-1].Overlaps(ps[i]) {
			return nil, invalid(field, "%s and %s overlap: list each address once", sourceText(ps[i-1]), sourceText(ps[i]))
		}
	}
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = sourceText(p)
	}
	return out, nil
}

// parsePrefixEntry reads one entry of source_addrs (or of a tenant's
// source_prefixes), none broader than /min4 (IPv4) or /min6 (IPv6).
func parsePrefixEntry(s string, min4, min6 int) (netip.Prefix, error) {
	if s == "" || len(s) > 64 {
		return netip.Prefix{}, fmt.Errorf("want an IP address or CIDR prefix")
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (the prefix is %s)", s, p.Masked())
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q reaches beyond the IPv4-mapped range", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
		}
		a = a.Unmap()
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	switch {
	case a.IsUnspecified():
		return netip.Prefix{}, fmt.Errorf("%q is the unspecified address", s)
	case a.IsMulticast():
		return netip.Prefix{}, fmt.Errorf("%q is a multicast address", s)
	case a.Is4() && p.Bits() < min4:
		return netip.Prefix{}, fmt.Errorf("%q is broader than /%d", s, min4)
	case a.Is6() && p.Bits() < min6:
		return netip.Prefix{}, fmt.Errorf("%q is broader than /%d", s, min6)
	}
	return p, nil
}

// sourceText writes a prefix as source_addrs holds it: a single address
// bare, a wider prefix in CIDR form.
func sourceText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ParseSourceAddr reads a normalised source_addrs entry back.
func ParseSourceAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// sourceOwner is a claim's value: tenant \0 sandbox id.
func sourceOwner(v []byte) (tenantID, sandboxID string) {
	t, s, _ := bytes.Cut(v, []byte{0})
	return string(t), string(s)
}

// txClaimSourceAddrs makes the claims of sbx (whose SourceAddrs are
// normalised) match its list: it drops the prefixes old held and it no
// longer does, and claims its new ones, refusing with ErrForbidden one
// outside its tenant's source_prefixes and with ErrConflict one that
// overlaps a prefix of another sandbox. Another tenant's sandbox is not
// named in the error.
func txClaimSourceAddrs(tx storage.Tx, sbx *Sandbox, old []string) error {
	b := tx.Bucket(bSourceAddrs)
	for _, s := range old {
		if slices.Contains(sbx.SourceAddrs, s) {
			continue
		}
		// Only its own claim: a key another sandbox holds stays.
		if tid, sid := sourceOwner(b.Get([]byte(s))); tid != sbx.TenantID || sid != sbx.ID {
			continue
		}
		if err := b.Delete([]byte(s)); err != nil {
			return err
		}
	}
	if len(sbx.SourceAddrs) == 0 {
		return nil
	}
	want := make([]netip.Prefix, 0, len(sbx.SourceAddrs))
	for _, s := range sbx.SourceAddrs {
		p, err := ParseSourceAddr(s)
		if err != nil {
			return invalid("source_addrs", "%q: %v", s, err)
		}
		want = append(want, p)
	}
	// Only inside the tenant's own prefixes (sourceprefixes.go), checked
	// in this transaction as the overlap is.
	t, err := txTenant(tx, sbx.TenantID)
	if err != nil {
		return err
	}
	if err := checkClaimsGranted(&t, want); err != nil {
		return err
	}
	err = b.ForEach(func(k, v []byte) error {
		tid, sid := sourceOwner(v)
		if tid == sbx.TenantID && sid == sbx.ID {
			return nil
		}
		have, err := ParseSourceAddr(string(k))
		if err != nil {
			return nil // not a claim this version wrote: ignore it
		}
		for _, p := range want {
			if p.Overlaps(have) {
				who := "another tenant's sandbox"
				if tid == sbx.TenantID {
					who = "sandbox " + sid
				}
				return fmt.Errorf("source_addrs: %s overlaps %s, registered to %s: %w", sourceText(p), sourceText(have), who, ErrConflict)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	owner := key(sbx.TenantID, sbx.ID)
	for _, s := range sbx.SourceAddrs {
		if err := b.Put([]byte(s), owner); err != nil {
			return err
		}
	}
	return nil
}

// SourceClaim is one claimed prefix and the sandbox that claims it.
type SourceClaim struct {
	Prefix    netip.Prefix
	TenantID  string
	SandboxID string
}

// SourceClaims returns every claimed source prefix of the store, of every
// tenant (the proxy's by-address index reads them whole).
func (s *Store) SourceClaims() ([]SourceClaim, error) {
	var out []SourceClaim
	err := s.view(func(tx storage.Tx) error {
		return tx.Bucket(bSourceAddrs).ForEach(func(k, v []byte) error {
			p, err := ParseSourceAddr(string(k))
			if err != nil {
				return nil
			}
			tid, sid := sourceOwner(v)
			out = append(out, SourceClaim{Prefix: p, TenantID: tid, SandboxID: sid})
			return nil
		})
	})
	return out, err
}

// SandboxClaiming returns the sandbox tenantID/id as stored now if it still
// claims addr among its source_addrs; ErrNotFound otherwise (deleted, or
// its addresses changed).
func (s *Store) SandboxClaiming(tenantID, id string, addr netip.Addr) (Sandbox, error) {
	sbx, err := s.Sandbox(tenantID, id)
	if err != nil {
		return Sandbox{}, err
	}
	addr = addr.Unmap().WithZone("")
	for _, e := range sbx.SourceAddrs {
		if p, err := ParseSourceAddr(e); err == nil && p.Contains(addr) {
			return sbx, nil
		}
	}
	return Sandbox{}, fmt.Errorf("sandbox %q does not claim %s: %w", id, addr, ErrNotFound)
}
