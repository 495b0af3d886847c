package vault

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNormalizeSourcePrefixes(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
		bad  string // part of the error, "" when it is taken
	}{
		{in: nil, want: nil},
		{in: []string{"10.0.0.0/8", "fd00::/8", "10.0.0.0/8"}, want: []string{"10.0.0.0/8", "fd00::/8"}},
		{in: []string{"::ffff:192.168.0.0/112"}, want: []string{"192.168.0.0/16"}},
		{in: []string{"10.1.2.3"}, want: []string{"10.1.2.3"}},
		{in: []string{"10.0.0.0/7"}, bad: "broader than /8"},
		{in: []string{"fc00::/7"}, bad: "broader than /8"},
		{in: []string{"0.0.0.0/8"}, bad: "unspecified"},
		{in: []string{"10.0.0.1/8"}, bad: "host bits set"},
		{in: []string{"10.0.0.0/8", "10.1.0.0/16"}, bad: "overlap"},
		{in: []string{"ff00::/8"}, bad: "multicast"},
		{in: []string{"fe80::/64%eth0"}, bad: "zones"},
		{in: make([]string, MaxSourcePrefixes+1), bad: "at most 64"},
	} {
		got, err := NormalizeSourcePrefixes(c.in)
		if c.bad != "" {
			var ve *ValidationError
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.bad) || !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "source_prefixes") {
				t.Errorf("%q: error %v, want one of source_prefixes saying %q", c.in, err, c.bad)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestSettingsSourceAllowed(t *testing.T) {
	st := Settings{SourcePrefixes: []string{"10.1.0.0/16", "10.9.9.9", "fd00::/48"}}
	for addr, want := range map[string]bool{
		"10.1.255.1": true, "::ffff:10.1.0.1": true, "10.9.9.9": true, "fd00::1": true, "fe80::1%eth0": false,
		"10.2.0.1": false, "10.9.9.8": false, "fd00:0:1::1": false,
	} {
		if got := st.SourceAllowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if (&Settings{}).SourceAllowed(netip.MustParseAddr("10.1.0.1")) {
		t.Error("a tenant without prefixes allows an address")
	}
}

// The operator's source_prefixes: set on creation or replaced; overlap
// with another tenant's, or narrowing under a sandbox's claim, is refused
// and changes nothing; a tenant's settings writes leave them alone.
func TestSourcePrefixes(t *testing.T) {
	s := openTest(t)
	op := s.As(Actor{Kind: ActorOperator, ID: "key_op"})
	acme, _, err := op.CreateTenantWith(NewTenant{Name: "acme", SourcePrefixes: []string{"10.1.0.0/16", "::ffff:10.2.0.0/112"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.1.0.0/16", "10.2.0.0/16"}; !reflect.DeepEqual(acme.Settings.SourcePrefixes, want) {
		t.Fatalf("created with %q, want %q", acme.Settings.SourcePrefixes, want)
	}
	if rows := adminRows(t, s, acme.ID); len(rows) != 1 || rows[0].Details["source_prefixes"] != "10.1.0.0/16,10.2.0.0/16" {
		t.Errorf("creation row %+v", rows)
	}
	other := mustTenant(t, s, "other")
	a, _ := mustSandbox(t, s, acme.ID, SandboxInput{SourceAddrs: []string{"10.1.0.5"}})
	b, _ := mustSandbox(t, s, acme.ID, SandboxInput{SourceAddrs: []string{"10.2.7.0/24"}})
	mustSandbox(t, s, acme.ID, SandboxInput{SourceAddrs: []string{"10.1.0.6"}})
	tenants := func() int {
		ts, err := s.Tenants()
		if err != nil {
			t.Fatal(err)
		}
		return len(ts)
	}
	n := tenants()
	checkRefusals(t, s, acme.ID, []refusal{
		{"new tenant overlapping", "", ErrConflict, func() error {
			_, _, err := op.CreateTenantWith(NewTenant{Name: "third", SourcePrefixes: []string{"10.0.0.0/8"}})
			if err != nil && !strings.Contains(err.Error(), "10.0.0.0/8 overlaps 10.1.0.0/16 of tenant "+acme.ID) {
				t.Errorf("error %q does not name the prefix and tenant it overlaps", err)
			}
			return err
		}},
		{"new tenant, bad prefix", "source_prefixes[0]", ErrInvalid, func() error {
			_, _, err := op.CreateTenantWith(NewTenant{Name: "third", SourcePrefixes: []string{"10.0.0.0/4"}})
			return err
		}},
		{"replace overlapping another tenant's", "", ErrConflict, func() error {
			_, err := op.SetSourcePrefixes(other.ID, []string{"10.9.0.0/16", "10.2.128.0/17"})
			if err != nil && !strings.Contains(err.Error(), "tenant "+acme.ID) {
				t.Errorf("error %q does not name the other tenant", err)
			}
			return err
		}},
		{"narrowing under claims", "", ErrConflict, func() error {
			_, err := op.SetSourcePrefixes(acme.ID, []string{"10.1.0.6", "10.2.7.0/25"})
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("2 sandboxes of this tenant claim source_addrs outside them (%s)", strings.Join(sortedIDs(a.ID, b.ID), ", "))) {
				t.Errorf("error %q does not name how many sandboxes and which", err)
			}
			return err
		}},
		{"removing under claims", "", ErrConflict, func() error { _, err := op.SetSourcePrefixes(acme.ID, nil); return err }},
		{"bad prefix", "source_prefixes[1]", ErrInvalid, func() error {
			_, err := op.SetSourcePrefixes(acme.ID, []string{"10.1.0.0/16", "bogus"})
			return err
		}},
		{"unknown tenant", "", ErrNotFound, func() error { _, err := op.SetSourcePrefixes("ten_nope", []string{"10.8.0.0/16"}); return err }},
	})
	if tenants() != n {
		t.Errorf("a refused creation made a tenant")
	}
	// Settings written by the tenant keep the operator's prefixes.
	on := true
	if st, err := s.UpdateSettings(acme.ID, SettingsPatch{AllowAnyHostSecrets: &on}); err != nil || !reflect.DeepEqual(st.SourcePrefixes, []string{"10.1.0.0/16", "10.2.0.0/16"}) {
		t.Fatalf("settings write: %+v %v", st, err)
	}
	// Narrowing to what the claims still fit, and moving a range to another
	// tenant once it is free.
	got, err := op.SetSourcePrefixes(acme.ID, []string{"10.1.0.0/24", "10.2.7.0/24"})
	if err != nil || !reflect.DeepEqual(got.Settings.SourcePrefixes, []string{"10.1.0.0/24", "10.2.7.0/24"}) {
		t.Fatalf("narrowed: %+v %v", got.Settings, err)
	}
	rows := adminRows(t, s, acme.ID)
	if r := rows[len(rows)-1]; r.Action != ActionSettingsChanged || r.ActorKind != ActorOperator || r.Details["changed"] != "source_prefixes" || r.Details["source_prefixes"] != "10.1.0.0/24,10.2.7.0/24" {
		t.Errorf("row %+v", r)
	}
	if _, err := op.SetSourcePrefixes(other.ID, []string{"10.2.0.0/24", "fd00::/48"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSandbox(other.ID, SandboxInput{SourceAddrs: []string{"10.2.0.9"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.SetSourcePrefixes(acme.ID, []string{"10.1.0.0/24", "10.2.0.0/16"}); !errors.Is(err, ErrConflict) {
		t.Errorf("widening over another tenant's range: %v", err)
	}
	// Removing them all is narrowing too.
	if _, err := op.SetSourcePrefixes(other.ID, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("clearing under a claim: %v", err)
	}
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// Racing writes never leave the rule broken: two tenants taking one range,
// or a narrowing racing a claim outside the new prefixes.
func TestSourcePrefixesRace(t *testing.T) {
	s := openTest(t)
	ts := []Tenant{mustTenant(t, s, "a"), mustTenant(t, s, "b"), mustTenant(t, s, "c"), mustTenant(t, s, "d")}
	var wg sync.WaitGroup
	errs := make([]error, len(ts))
	for i, tn := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.SetSourcePrefixes(tn.ID, []string{fmt.Sprintf("10.%d.0.0/16", 20+i), "10.99.0.0/16"})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Errorf("error %v, want a conflict", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d tenants took one range, want 1", won)
	}
	tn := mustTenant(t, s, "e")
	mustGrant(t, s, tn.ID, "10.50.0.0/16", "10.51.0.0/16")
	for range 10 {
		var claimErr, narrowErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			var sbx Sandbox
			if sbx, _, claimErr = s.CreateSandbox(tn.ID, SandboxInput{SourceAddrs: []string{"10.51.0.1"}}); claimErr == nil {
				claimErr = s.DeleteSandbox(tn.ID, sbx.ID)
			}
		}()
		go func() {
			defer wg.Done()
			_, narrowErr = s.SetSourcePrefixes(tn.ID, []string{"10.50.0.0/16"})
		}()
		wg.Wait()
		if claimErr != nil && !errors.Is(claimErr, ErrForbidden) || narrowErr != nil && !errors.Is(narrowErr, ErrConflict) {
			t.Fatalf("claim %v, narrowing %v", claimErr, narrowErr)
		}
		cur, err := s.Tenant(tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		claims, err := s.SourceClaims()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range claims {
			if c.TenantID == tn.ID && !within(c.Prefix, ParsePrefixes(cur.Settings.SourcePrefixes)) {
				t.Fatalf("claim %s outside %q", c.Prefix, cur.Settings.SourcePrefixes)
			}
		}
		mustGrant(t, s, tn.ID, "10.50.0.0/16", "10.51.0.0/16")
	}
}

func FuzzNormalizeSourcePrefixes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.0/104", "10.0.0.0/7", "1.2.3.4", ""} {
		f.Add(s, "192.168.0.0/16")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		out, err := NormalizeSourcePrefixes([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		again, err := NormalizeSourcePrefixes(out)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("%q normalises to %q, then %q (%v)", []string{a, b}, out, again, err)
		}
		// Every entry reads back, and holds itself as a claim would.
		ps := ParsePrefixes(out)
		if len(ps) != len(out) {
			t.Fatalf("%q: only %d entries read back", out, len(ps))
		}
		st := Settings{SourcePrefixes: out}
		for _, p := range ps {
			if !within(p, ps) || !st.SourceAllowed(p.Addr()) || p.Bits() < MinTenantPrefixV4 {
				t.Fatalf("entry %s", p)
			}
		}
	})
}

// What the transparent listener adds per connection to check its tenant's
// prefixes: one range (typical) and 64 (the most), the address in the last.
func BenchmarkSettingsSourceAllowed(b *testing.B) {
	for _, n := range []int{1, MaxSourcePrefixes} {
		st := Settings{}
		for i := range n {
			st.SourcePrefixes = append(st.SourcePrefixes, fmt.Sprintf("10.%d.0.0/16", i))
		}
		addr := netip.AddrFrom4([4]byte{10, byte(n - 1), 7, 7})
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if !st.SourceAllowed(addr) {
					b.Fatal("refused")
				}
			}
		})
	}
}
