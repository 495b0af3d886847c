package vault

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

func TestNormalizeSourceAddrs(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
		bad  string // part of the error, "" when it is taken
	}{
		{in: nil, want: nil},
		{in: []string{}, want: nil},
		{in: []string{"10.0.0.5"}, want: []string{"10.0.0.5"}},
		{in: []string{"10.0.0.5/32"}, want: []string{"10.0.0.5"}},
		{in: []string{"::ffff:10.0.0.5"}, want: []string{"10.0.0.5"}},
		{in: []string{"::ffff:10.0.0.0/120"}, want: []string{"10.0.0.0/24"}},
		{in: []string{"2001:DB8::1"}, want: []string{"2001:db8::1"}},
		{in: []string{"2001:db8::/64", "10.0.1.0/24", "10.0.0.9", "10.0.0.9"}, want: []string{"10.0.0.9", "10.0.1.0/24", "2001:db8::/64"}},
		{in: []string{"10.0.0.5/24"}, bad: "host bits set"},
		{in: []string{"10.0.0.0/24", "10.0.0.7"}, bad: "overlap"},
		{in: []string{"0.0.0.0/0"}, bad: "unspecified"},
		{in: []string{"10.0.0.0/8"}, bad: "broader than /16"},
		{in: []string{"2001:db8::/32"}, bad: "broader than /48"},
		{in: []string{"::"}, bad: "unspecified"},
		{in: []string{"224.0.0.1"}, bad: "multicast"},
		{in: []string{"fe80::1%eth0"}, bad: "zones"},
		{in: []string{"example.com"}, bad: "not an IP address"},
		{in: []string{"10.0.0.1/33"}, bad: "not a CIDR prefix"},
		{in: []string{""}, bad: "want an IP"},
		{in: []string{"::ffff:0:0/96"}, bad: "unspecified"},
		{in: []string{"::ffff:10.0.0.0/104"}, bad: "broader than /16"},
		{in: make([]string, MaxSourceAddrs+1), bad: "at most"},
	} {
		got, err := NormalizeSourceAddrs(c.in)
		if c.bad != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("%q: error %v, want one saying %q", c.in, err, c.bad)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestSourceAddrsClaims(t *testing.T) {
	s := openTest(t)
	acme, other := mustTenant(t, s, "acme"), mustTenant(t, s, "other")
	mustGrant(t, s, acme.ID, "10.1.0.0/16", "10.2.0.0/16", "10.4.0.0/24", "fd00::/48")
	mustGrant(t, s, other.ID, "10.9.0.0/16")
	none := mustTenant(t, s, "none")
	a, _ := mustSandbox(t, s, acme.ID, SandboxInput{SourceAddrs: []string{"10.1.0.5", "fd00::/64"}})
	if !reflect.DeepEqual(a.SourceAddrs, []string{"10.1.0.5", "fd00::/64"}) {
		t.Fatalf("stored %q", a.SourceAddrs)
	}
	b, _ := mustSandbox(t, s, acme.ID, SandboxInput{})
	checkRefusals(t, s, acme.ID, []refusal{
		{"overlap on create, same tenant", "", ErrConflict, func() error {
			_, _, err := s.CreateSandbox(acme.ID, SandboxInput{SourceAddrs: []string{"10.1.0.0/24"}})
			if err != nil && !strings.Contains(err.Error(), a.ID) {
				t.Errorf("error %q does not name the sandbox of the same tenant", err)
			}
			return err
		}},
		{"another tenant's address on create", "source_addrs", ErrForbidden, func() error {
			_, _, err := s.CreateSandbox(other.ID, SandboxInput{SourceAddrs: []string{"10.9.0.1", "fd00::1"}})
			if err != nil && (strings.Contains(err.Error(), a.ID) || !strings.Contains(err.Error(), "fd00::1 is outside this tenant's source_prefixes (10.9.0.0/16)")) {
				t.Errorf("error %q: want it to name the address and the tenant's prefixes, not the sandbox", err)
			}
			return err
		}},
		{"outside the tenant's prefixes on update", "source_addrs", ErrForbidden, func() error {
			_, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{SourceAddrs: &[]string{"10.2.0.1", "10.3.0.1"}})
			if err != nil && !strings.Contains(err.Error(), "10.3.0.1 is outside") {
				t.Errorf("error %q does not name the address", err)
			}
			return err
		}},
		{"wider than the tenant's prefix", "source_addrs", ErrForbidden, func() error {
			_, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{SourceAddrs: &[]string{"10.4.0.0/23"}})
			return err
		}},
		{"tenant without prefixes", "source_addrs", ErrForbidden, func() error {
			_, _, err := s.CreateSandbox(none.ID, SandboxInput{SourceAddrs: []string{"10.7.0.1"}})
			if err != nil && !strings.Contains(err.Error(), "no source_prefixes") {
				t.Errorf("error %q does not say the tenant has no prefixes", err)
			}
			return err
		}},
		{"overlap on update", "", ErrConflict, func() error {
			_, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{SourceAddrs: &[]string{"10.2.0.1", "10.1.0.5"}})
			return err
		}},
		{"bad entry on update", "source_addrs[0]", ErrInvalid, func() error {
			_, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{SourceAddrs: &[]string{"10.0.0.1/8"}})
			return err
		}},
		{"nothing to update", "", ErrInvalid, func() error { _, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{}); return err }},
		{"other tenant's sandbox", "", ErrNotFound, func() error {
			_, err := s.UpdateSandbox(other.ID, a.ID, SandboxUpdate{SourceAddrs: &[]string{"10.9.0.1"}})
			return err
		}},
	})
	lookup := sourceLookup(t, NewSourceIndex(s))
	for addr, want := range map[string]string{"10.1.0.5": a.ID, "::ffff:10.1.0.5": a.ID, "fd00::abcd": a.ID, "10.1.0.6": "", "fd00:0:0:1::1": ""} {
		if got := lookup(addr); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	// Moving an address from a to b: the index follows at once.
	if _, err := s.UpdateSandbox(acme.ID, a.ID, SandboxUpdate{SourceAddrs: &[]string{"fd00::/64"}}); err != nil {
		t.Fatal(err)
	}
	if got := lookup("10.1.0.5"); got != "" {
		t.Errorf("a released address still finds %s", got)
	}
	b, err := s.UpdateSandbox(acme.ID, b.ID, SandboxUpdate{SourceAddrs: &[]string{"10.1.0.5"}})
	if err != nil || !reflect.DeepEqual(b.SourceAddrs, []string{"10.1.0.5"}) {
		t.Fatalf("update: %+v %v", b, err)
	}
	if got := lookup("10.1.0.5"); got != b.ID {
		t.Errorf("moved address finds %q, want %s", got, b.ID)
	}
	// Deleting a sandbox releases its claims.
	if err := s.DeleteSandbox(acme.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	if got := lookup("10.1.0.5"); got != "" {
		t.Errorf("a deleted sandbox's address finds %s", got)
	}
	c, _ := mustSandbox(t, s, acme.ID, SandboxInput{SourceAddrs: []string{"10.1.0.0/24"}})
	if got := lookup("10.1.0.77"); got != c.ID {
		t.Errorf("reclaimed prefix finds %q, want %s", got, c.ID)
	}
	// An empty list removes them all.
	if _, err := s.UpdateSandbox(acme.ID, c.ID, SandboxUpdate{SourceAddrs: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if got := lookup("10.1.0.77"); got != "" {
		t.Errorf("cleared prefix finds %s", got)
	}
}

// Two sandboxes racing for one address: exactly one wins.
func TestSourceAddrsRace(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	mustGrant(t, s, tn.ID, "10.3.0.0/16")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = s.CreateSandbox(tn.ID, SandboxInput{SourceAddrs: []string{"10.3.0.0/30"}})
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
		t.Errorf("%d claims of one prefix committed, want 1", won)
	}
}

// The by-address lookup finds a claim among many with a few map lookups.
func BenchmarkSourceIndexLookup(b *testing.B) {
	cs := make([]SourceClaim, 0, 10000)
	for i := range 10000 {
		cs = append(cs, SourceClaim{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 32), SandboxID: "s"})
	}
	cs = append(cs, SourceClaim{Prefix: netip.MustParsePrefix("10.200.0.0/24")})
	tbl := newSourceTable(0, cs)
	addr := netip.MustParseAddr("10.0.77.1")
	for b.Loop() {
		if _, ok := tbl.find(addr); !ok {
			b.Fatal("not found")
		}
	}
}

func FuzzNormalizeSourceAddrs(f *testing.F) {
	for _, s := range []string{"10.0.0.5", "10.0.0.0/24", "::ffff:10.0.0.5", "2001:db8::/64", "fe80::1%eth0", "1.2.3.4/33", "::ffff:0:0/96", ""} {
		f.Add(s, "10.0.0.9")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		out, err := NormalizeSourceAddrs([]string{a, b})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// Normalised is a fixed point, and every entry reads back.
		again, err := NormalizeSourceAddrs(out)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("%q normalises to %q, then %q (%v)", []string{a, b}, out, again, err)
		}
		for _, e := range out {
			p, err := ParseSourceAddr(e)
			if err != nil || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("entry %q: %v %v", e, p, err)
			}
		}
	})
}

// Another replica's writes reach the index through the change feed; before
// they do, a stale table never hands a connection to a sandbox that let
// its address go (the row is checked), and only misses new claims; while
// the feed is down every lookup reads the claims again.
func TestSourceIndexFollowsOtherReplicas(t *testing.T) {
	s, f := openFeedTest(t)
	tn := mustTenant(t, s, "acme")
	mustGrant(t, s, tn.ID, "10.5.0.0/16", "10.6.0.0/16", "fd05::/48")
	a, _ := mustSandbox(t, s, tn.ID, SandboxInput{SourceAddrs: []string{"10.5.0.1"}})
	b, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	// remote writes source_addrs as another replica would: straight to
	// the shared backend, no listener of this process told.
	remote := func(id string, addrs ...string) {
		t.Helper()
		err := s.backend.Update(func(tx storage.Tx) error {
			var row storedSandbox
			if _, err := getJSON(tx.Bucket(bSandboxes), key(tn.ID, id), &row); err != nil {
				return err
			}
			old := row.SourceAddrs
			row.SourceAddrs = addrs
			if err := txClaimSourceAddrs(tx, &row.Sandbox, old); err != nil {
				return err
			}
			return putJSON(tx.Bucket(bSandboxes), key(tn.ID, id), &row)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	lookup := sourceLookup(t, NewSourceIndex(s))
	if got := lookup("10.5.0.1"); got != a.ID {
		t.Fatalf("found %q, want %s", got, a.ID)
	}
	remote(a.ID)
	remote(b.ID, "10.5.0.1")
	if got := lookup("10.5.0.1"); got != b.ID {
		t.Fatalf("after a move not yet delivered: %q, want %s (never %s)", got, b.ID, a.ID)
	}
	remote(a.ID, "10.6.0.0/24")
	if got := lookup("10.6.0.9"); got != "" && got != a.ID {
		t.Fatalf("a new claim not yet delivered finds %q", got)
	}
	f.deliver(tn.ID)
	if got := lookup("10.6.0.9"); got != a.ID {
		t.Fatalf("after the delivery: %q, want %s", got, a.ID)
	}
	f.healthy.Store(false)
	remote(b.ID, "fd05::/64")
	if got := lookup("fd05::1"); got != b.ID {
		t.Fatalf("feed down, a new claim: %q, want %s", got, b.ID)
	}
}

// What the transparent listener pays per connection to know its sandbox:
// the index and the read of the sandbox's row (bbolt), 1,000 sandboxes.
func BenchmarkSourceIndexLookupStore(b *testing.B) {
	idx := claimingSandboxes(b, 1000)
	addr := netip.MustParseAddr("10.40.1.200")
	for b.Loop() {
		if _, err := idx.Lookup(addr); err != nil {
			b.Fatal(err)
		}
	}
}

// A write marks the table stale but does not make the next lookup read
// every claim: a source the stale table finds (and its sandbox still
// claims) is answered from it; a new claim, missing from it, is found at
// once by building the table again; a claim let go is never answered.
func TestSourceIndexStaleTableAnswersHits(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	mustGrant(t, s, tn.ID, "10.50.0.0/16")
	a, _ := mustSandbox(t, s, tn.ID, SandboxInput{SourceAddrs: []string{"10.50.0.1"}})
	idx := NewSourceIndex(s)
	lookup := sourceLookup(t, idx)
	if got := lookup("10.50.0.1"); got != a.ID {
		t.Fatalf("10.50.0.1: %q, want %q", got, a.ID)
	}
	built := idx.table.Load()

	// A write that changes no claim: the table is stale, the hit is
	// answered from it.
	mustSandbox(t, s, tn.ID, SandboxInput{})
	if got := lookup("10.50.0.1"); got != a.ID {
		t.Fatalf("after a write, 10.50.0.1: %q, want %q", got, a.ID)
	}
	if idx.table.Load() != built {
		t.Fatal("a hit after an unrelated write built the table again")
	}

	// A new claim: missing from the stale table, found by building it.
	b, _ := mustSandbox(t, s, tn.ID, SandboxInput{SourceAddrs: []string{"10.50.0.2"}})
	if got := lookup("10.50.0.2"); got != b.ID {
		t.Fatalf("new claim 10.50.0.2: %q, want %q", got, b.ID)
	}

	// A claim moved from a to another sandbox: the stale table's entry
	// fails its check, the new table answers the new owner.
	built = idx.table.Load()
	if _, err := s.UpdateSandbox(tn.ID, a.ID, SandboxUpdate{SourceAddrs: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	c, _ := mustSandbox(t, s, tn.ID, SandboxInput{SourceAddrs: []string{"10.50.0.1"}})
	if idx.table.Load() != built {
		t.Fatal("the table was built again before a lookup")
	}
	if got := lookup("10.50.0.1"); got != c.ID {
		t.Fatalf("moved claim 10.50.0.1: %q, want %q", got, c.ID)
	}
	// Let go: never answered.
	if _, err := s.UpdateSandbox(tn.ID, c.ID, SandboxUpdate{SourceAddrs: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	if got := lookup("10.50.0.1"); got != "" {
		t.Fatalf("released 10.50.0.1: %q", got)
	}
}

// BenchmarkSourceIndexRebuild: what the first transparent connection
// after a vault write pays to read every claim again, at 10,000 sandboxes
// with one address each (SourceIndex drops its table on every write that
// notifies, for any tenant).
func BenchmarkSourceIndexRebuild(b *testing.B) {
	idx := claimingSandboxes(b, 10000)
	for b.Loop() {
		t, err := idx.build()
		if err != nil || len(t.claims) != 10000 {
			b.Fatal(err, len(t.claims))
		}
	}
}

// sourceLookup returns a lookup of idx by address: the sandbox's id, ""
// for an address no sandbox claims.
func sourceLookup(t *testing.T, idx *SourceIndex) func(addr string) string {
	return func(addr string) string {
		t.Helper()
		sbx, err := idx.Lookup(netip.MustParseAddr(addr))
		if errors.Is(err, ErrUnknownSource) {
			return ""
		}
		if err != nil {
			t.Fatalf("lookup %s: %v", addr, err)
		}
		return sbx.ID
	}
}

// claimingSandboxes makes n sandboxes of one tenant, each claiming one
// address of 10.40.0.0/16 (10.40.0.0, 10.40.0.1, ...), and returns the
// index of their claims.
func claimingSandboxes(b *testing.B, n int) *SourceIndex {
	s := openTest(b)
	tn := mustTenant(b, s, "acme")
	mustGrant(b, s, tn.ID, "10.40.0.0/16")
	for i := range n {
		mustSandbox(b, s, tn.ID, SandboxInput{SourceAddrs: []string{netip.AddrFrom4([4]byte{10, 40, byte(i >> 8), byte(i)}).String()}})
	}
	return NewSourceIndex(s)
}
