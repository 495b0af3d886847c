package vault

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// A tenant's source_prefixes are the addresses its sandboxes may claim as
// source_addrs (sourceaddrs.go): the operator grants them, never the
// tenant itself, so that on a node shared by tenants one tenant cannot
// claim an address the platform gives another tenant's sandbox (and read
// that sandbox's traffic in its own audit log, or squat its range). A
// tenant with none claims nothing: transparent mode is opt-in per tenant.
//
// Two tenants' prefixes never overlap, so an address belongs to at most
// one tenant. Each write checks what it changes inside its own
// transaction: a claim outside its tenant's prefixes is refused
// (ErrForbidden), prefixes that would overlap another tenant's, or leave
// a sandbox's claim outside them, are refused (ErrConflict).

// MaxSourcePrefixes bounds the entries of one tenant's source_prefixes.
const MaxSourcePrefixes = 64

// The shortest prefixes source_prefixes may hold. A tenant's range is
// wider than a sandbox's claim, but a /0 would leave no address for any
// other tenant: name the ranges the platform hands out.
const (
	MinTenantPrefixV4 = 8
	MinTenantPrefixV6 = 8
)

// maxNamed bounds the sandbox ids a refusal names.
const maxNamed = 20

// NormalizeSourcePrefixes checks and normalises a tenant's source_prefixes
// as NormalizeSourceAddrs does a sandbox's source_addrs, but with at most
// MaxSourcePrefixes entries, none broader than /MinTenantPrefixV4 (IPv4)
// or /MinTenantPrefixV6 (IPv6).
func NormalizeSourcePrefixes(in []string) ([]string, error) {
	return normalizePrefixes("source_prefixes", in, MaxSourcePrefixes, MinTenantPrefixV4, MinTenantPrefixV6)
}

// SourceAllowed reports whether addr (an IPv4-mapped address counts as
// its IPv4 form) lies inside one of the tenant's SourcePrefixes. It parses
// them on every call (about 0.1 us each): a caller that asks often keeps
// ParsePrefixes' result and asks PrefixesHold.
func (st *Settings) SourceAllowed(addr netip.Addr) bool {
	return PrefixesHold(ParsePrefixes(st.SourcePrefixes), addr)
}

// PrefixesHold reports whether addr (an IPv4-mapped address counts as its
// IPv4 form) lies inside one of ps.
func PrefixesHold(ps []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, q := range ps {
		if q.Contains(addr) {
			return true
		}
	}
	return false
}

// within reports whether prefix p lies wholly inside one of qs.
func within(p netip.Prefix, qs []netip.Prefix) bool {
	for _, q := range qs {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// ParsePrefixes reads normalised source_prefixes (or source_addrs) back;
// an entry that does not parse (no version wrote it) is left out, so it
// grants nothing.
func ParsePrefixes(in []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		if p, err := ParseSourceAddr(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// checkClaimsGranted refuses with ErrForbidden, naming the first, a claim
// of want that lies outside the source_prefixes of its tenant t.
func checkClaimsGranted(t *Tenant, want []netip.Prefix) error {
	granted := ParsePrefixes(t.Settings.SourcePrefixes)
	for _, p := range want {
		if within(p, granted) {
			continue
		}
		if len(granted) == 0 {
			return forbidden("source_addrs", "%s: this tenant has no source_prefixes, so its sandboxes may claim no source address; the operator grants them (PUT /api/v1/tenants/{id}/source_prefixes)", sourceText(p))
		}
		return forbidden("source_addrs", "%s is outside this tenant's source_prefixes (%s); the operator grants them", sourceText(p), strings.Join(t.Settings.SourcePrefixes, ", "))
	}
	return nil
}

// txCheckPrefixesFree refuses with ErrConflict prefixes ps of tenant
// tenantID that overlap another tenant's source_prefixes, naming that
// tenant (only the operator sets prefixes).
func txCheckPrefixesFree(tx storage.Tx, tenantID string, ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	return tx.Bucket(bTenants).ForEach(func(k, v []byte) error {
		if string(k) == tenantID {
			return nil
		}
		var other Tenant
		if _, err := getJSON(tx.Bucket(bTenants), k, &other); err != nil {
			return err
		}
		for _, q := range ParsePrefixes(other.Settings.SourcePrefixes) {
			for _, p := range ps {
				if p.Overlaps(q) {
					return fmt.Errorf("source_prefixes: %s overlaps %s of tenant %s: %w", sourceText(p), sourceText(q), other.ID, ErrConflict)
				}
			}
		}
		return nil
	})
}

// txClaimsOutside returns the sandboxes of tenantID (sorted, once each)
// holding a claim outside ps.
func txClaimsOutside(tx storage.Tx, tenantID string, ps []netip.Prefix) ([]string, error) {
	var ids []string
	err := tx.Bucket(bSourceAddrs).ForEach(func(k, v []byte) error {
		tid, sid := sourceOwner(v)
		if tid != tenantID {
			return nil
		}
		p, err := ParseSourceAddr(string(k))
		if err == nil && within(p, ps) {
			return nil
		}
		if !slices.Contains(ids, sid) {
			ids = append(ids, sid)
		}
		return nil
	})
	slices.Sort(ids)
	return ids, err
}

// SetSourcePrefixes replaces a tenant's source_prefixes (an empty list
// removes them all) and returns the tenant as stored. It is the
// operator's: the API admits no tenant key. Prefixes that overlap another
// tenant's, or that would leave a claim of one of the tenant's sandboxes
// outside them, are refused with ErrConflict (naming the other tenant, or
// how many sandboxes and which), and the tenant is left as it was.
func (s *Store) SetSourcePrefixes(tenantID string, prefixes []string) (Tenant, error) {
	norm, err := NormalizeSourcePrefixes(prefixes)
	if err != nil {
		return Tenant{}, err
	}
	ps := ParsePrefixes(norm)
	var t Tenant
	err = s.update(tenantID, func(tx storage.Tx) error {
		var err error
		if t, err = txTenant(tx, tenantID); err != nil {
			return err
		}
		ids, err := txClaimsOutside(tx, tenantID, ps)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			named := ids
			more := ""
			if len(named) > maxNamed {
				named, more = named[:maxNamed], fmt.Sprintf(" and %d more", len(ids)-maxNamed)
			}
			return fmt.Errorf("source_prefixes: %d sandboxes of this tenant claim source_addrs outside them (%s%s): change or clear their source_addrs first: %w",
				len(ids), strings.Join(named, ", "), more, ErrConflict)
		}
		if err := txCheckPrefixesFree(tx, tenantID, ps); err != nil {
			return err
		}
		old := t.Settings
		t.Settings.SourcePrefixes = norm
		t.UpdatedAt = s.stamp()
		if err := putJSON(tx.Bucket(bTenants), []byte(t.ID), &t); err != nil {
			return err
		}
		return s.txAudit(tx, ActionSettingsChanged, audit.Row{TenantID: t.ID, Details: map[string]string{
			"changed":         changedSettings(old, t.Settings),
			"source_prefixes": strings.Join(norm, ","),
		}})
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}
