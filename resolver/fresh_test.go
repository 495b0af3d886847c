package resolver

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
)

// missedFixture is a resolver whose store shares its backend with a second
// store, other: writes through other reach the data but not the resolver,
// as another replica's writes do while the change feed is down. fresh is
// the resolver's Config.Fresh.
type missedFixture struct {
	*fixture
	other *vault.Store
	fresh atomic.Bool
}

func newMissedFixture(t *testing.T) *missedFixture {
	t.Helper()
	dir := t.TempDir()
	b, err := boltstore.Open(filepath.Join(dir, "v.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	key := vault.NewMasterKey()
	open := func(journal string) *vault.Store {
		s, err := vault.Open(vault.Config{Backend: b, JournalPath: filepath.Join(dir, journal), MasterKey: key, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, other := open("a.journal"), open("b.journal")
	t.Cleanup(func() { other.Close(); s.Close() })
	m := &missedFixture{other: other}
	m.fresh.Store(true)
	r, err := New(Config{Store: s, Fresh: m.fresh.Load})
	if err != nil {
		t.Fatal(err)
	}
	m.fixture = &fixture{t: t, store: s, r: r}
	return m
}

// While Fresh is false, Resolve, MayUse and Settings answer from the
// vault, not from what they cached; the catch-up that ends it (here a
// change of the tenant) makes what they read meanwhile stale too.
func TestFreshFalseBypassesCache(t *testing.T) {
	m := newMissedFixture(t)
	ctx := context.Background()
	tid := m.tenant("acme")
	sbx := m.sandbox(tid, attribution)
	sec := m.put(tid, sbx, LevelTenant, "k", "v1")

	mayUseB := func() bool {
		t.Helper()
		u, err := m.r.MayUse(ctx, sbx.ID, "b.example.com")
		if err != nil {
			t.Fatal(err)
		}
		return u.Any
	}
	endUser := func() bool {
		t.Helper()
		st, err := m.r.Settings(ctx, tid)
		if err != nil {
			t.Fatal(err)
		}
		return st.AllowEndUserCredentials
	}
	expect := func(step, value string, onB, eu bool) {
		t.Helper()
		if v, _, err := m.resolve(sbx.ID, "k"); err != nil || v != value {
			t.Fatalf("%s: Resolve = %q, %v; want %q", step, v, err, value)
		}
		if got := mayUseB(); got != onB {
			t.Fatalf("%s: MayUse(b.example.com) = %v, want %v", step, got, onB)
		}
		if got := endUser(); got != eu {
			t.Fatalf("%s: allow_end_user_credentials = %v, want %v", step, got, eu)
		}
	}
	expect("warm", "v1", false, true)

	// Another replica's writes, missed.
	if _, err := m.other.RotateSecret(tid, sec.ID, vault.RotateInput{Value: "v2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.other.UpsertSecret(tid, vault.SecretInput{Name: "k", Value: "v2", Scope: vault.ScopeTenant, AllowedHosts: []string{"b.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.other.UpdateSettings(tid, vault.SettingsPatch{AllowEndUserCredentials: new(false)}); err != nil {
		t.Fatal(err)
	}
	expect("missed, fresh", "v1", false, true) // the cache answers: the fixture misses writes

	m.fresh.Store(false)
	for i := range 3 {
		expect("not fresh "+string(rune('0'+i)), "v2", true, false)
	}

	// A write missed after those reads, then the catch-up that delivers
	// it: what was read while not fresh is not trusted.
	if _, err := m.other.RotateSecret(tid, sec.ID, vault.RotateInput{Value: "v3"}); err != nil {
		t.Fatal(err)
	}
	m.r.Invalidate(tid) // the catch-up's delivery
	m.fresh.Store(true)
	expect("caught up", "v3", true, false)
}

// AllTenants (the catch-up of a change log pruned past what the replica
// saw) moves every tenant's generation.
func TestInvalidateAllTenants(t *testing.T) {
	m := newMissedFixture(t)
	var tids []string
	var secs []vault.Secret
	var sbxs []vault.Sandbox
	for _, name := range []string{"acme", "globex", "initech"} {
		tid := m.tenant(name)
		sbx := m.sandbox(tid, attribution)
		tids, sbxs = append(tids, tid), append(sbxs, sbx)
		secs = append(secs, m.put(tid, sbx, LevelWorkspace, "k", "old"))
		if v, _, err := m.resolve(sbx.ID, "k"); err != nil || v != "old" {
			t.Fatalf("%s: %q %v", name, v, err)
		}
	}
	for i, tid := range tids {
		if _, err := m.other.RotateSecret(tid, secs[i].ID, vault.RotateInput{Value: "new"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sbx := range sbxs {
		if v, _, _ := m.resolve(sbx.ID, "k"); v != "old" {
			t.Fatalf("the fixture did not miss the writes: %q", v)
		}
	}
	m.r.Invalidate(vault.AllTenants)
	for i, sbx := range sbxs {
		if v, _, err := m.resolve(sbx.ID, "k"); err != nil || v != "new" {
			t.Fatalf("tenant %d after AllTenants: %q %v", i, v, err)
		}
	}
}

// Warm answers stay allocation-free with a Fresh func (MayUse's one
// allocation is older: its host match).
func TestResolveWarmAllocsWithFresh(t *testing.T) {
	m := newMissedFixture(t)
	tid := m.tenant("acme")
	sbx := m.sandbox(tid, attribution)
	m.put(tid, sbx, LevelTenant, "k", "v")
	ctx := context.Background()
	if _, err := m.r.Resolve(ctx, sbx.ID, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.r.Settings(ctx, tid); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		m.r.Resolve(ctx, sbx.ID, "k")
		m.r.Settings(ctx, tid)
	}); n != 0 {
		t.Fatalf("%v allocations per warm Resolve and Settings", n)
	}
}

// BenchmarkResolveWarm as serve builds the resolver: Fresh is the store's
// ChangesHealthy.
func BenchmarkResolveWarmFresh(b *testing.B) {
	f := newFixture(b)
	r, err := New(Config{Store: f.store, Fresh: f.store.ChangesHealthy})
	if err != nil {
		b.Fatal(err)
	}
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	f.put(tid, sbx, LevelWorkspace, "openai", "sk-value")
	ctx := context.Background()
	if _, err := r.Resolve(ctx, sbx.ID, "openai"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, sbx.ID, "openai"); err != nil {
			b.Fatal(err)
		}
	}
}
