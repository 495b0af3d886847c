package vault

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// openTest opens a fresh vault in tb.TempDir() with a new master key and
// closes it when the test ends. opts adjust the Config before Open; the
// backend is newTestBackend's unless an opt set one.
func openTest(tb testing.TB, opts ...func(*Config)) *Store {
	tb.Helper()
	cfg := Config{
		Path:      filepath.Join(tb.TempDir(), "vault.db"),
		MasterKey: NewMasterKey(),
		Timeout:   200 * time.Millisecond,
		NoSync:    true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Backend == nil {
		cfg.Backend = newTestBackend(tb, cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		tb.Fatalf("open %s: %v", cfg.Path, err)
	}
	tb.Cleanup(func() {
		// A test may have closed it already to reopen the file; a
		// second Close is a no-op.
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

// newTestBackend opens the backend of a test's store: the store named by
// cfg.Path (the first call for a path gives an empty one, later calls the
// same data again, as reopen needs), with cfg.Timeout and cfg.NoSync
// where they apply. The suite runs on boltstore, the file at cfg.Path;
// to run it on another backend, a TestMain sets this variable (one line).
// Tests that need the bbolt file itself call needBoltFile.
var newTestBackend = openBoltTestBackend

func openBoltTestBackend(tb testing.TB, cfg Config) storage.Backend {
	tb.Helper()
	b, err := boltstore.Open(cfg.Path, boltstore.Options{Timeout: cfg.Timeout, NoSync: cfg.NoSync, FreelistMap: true})
	if err != nil {
		tb.Fatalf("open %s: %v", cfg.Path, err)
	}
	return b
}

// needBoltFile skips a test that reads or writes s's bbolt file itself
// (its lock, its pages, bbolt's batch settings) when the suite runs on
// another backend, and returns the file.
func needBoltFile(tb testing.TB, s *Store) *boltstore.Store {
	tb.Helper()
	b, ok := s.backend.(*boltstore.Store)
	if !ok {
		tb.Skipf("needs a bbolt file; the store is a %T", s.backend)
	}
	return b
}

// reopen closes s and opens its store again with key.
func reopen(tb testing.TB, s *Store, key *MasterKey) *Store {
	tb.Helper()
	cfg := Config{Path: s.Path(), MasterKey: key, Timeout: 200 * time.Millisecond, NoSync: true}
	if err := s.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	cfg.Backend = newTestBackend(tb, cfg)
	s2, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		tb.Fatalf("reopen: %v", err)
	}
	tb.Cleanup(func() { s2.Close() })
	return s2
}

// updateClosed runs fn in a write transaction on the store named by path
// while no vault has it open: a write past the vault's code, as a bug or
// another version would leave it.
func updateClosed(tb testing.TB, path string, fn func(tx storage.Tx) error) {
	tb.Helper()
	b := newTestBackend(tb, Config{Path: path, Timeout: time.Second, NoSync: true})
	defer b.Close()
	if err := b.Update(fn); err != nil {
		tb.Fatal(err)
	}
}

// countingBackend counts the write transactions begun on its backend.
type countingBackend struct {
	storage.Backend
	writes atomic.Int64
}

func (c *countingBackend) Update(fn func(storage.Tx) error) error {
	c.writes.Add(1)
	return c.Backend.Update(fn)
}

func (c *countingBackend) Batch(fn func(storage.Tx) error) error {
	c.writes.Add(1)
	return c.Backend.Batch(fn)
}

// countKeys is how many keys a bucket holds.
func countKeys(b storage.Bucket) int {
	n := 0
	b.ForEach(func(_, _ []byte) error {
		n++
		return nil
	})
	return n
}

// testClock is an injectable clock for Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustTenant(tb testing.TB, s *Store, name string) Tenant {
	tb.Helper()
	t, _, err := s.EnsureTenant(name)
	if err != nil {
		tb.Fatalf("tenant %q: %v", name, err)
	}
	return t
}

// mustGrant sets a tenant's source_prefixes.
func mustGrant(tb testing.TB, s *Store, tenantID string, prefixes ...string) {
	tb.Helper()
	if _, err := s.SetSourcePrefixes(tenantID, prefixes); err != nil {
		tb.Fatalf("source_prefixes %q: %v", prefixes, err)
	}
}

func mustSandbox(tb testing.TB, s *Store, tenantID string, in SandboxInput) (Sandbox, string) {
	tb.Helper()
	sbx, token, err := s.CreateSandbox(tenantID, in)
	if err != nil {
		tb.Fatalf("sandbox: %v", err)
	}
	return sbx, token
}

func mustUpsert(tb testing.TB, s *Store, tenantID string, in SecretInput) UpsertResult {
	tb.Helper()
	res, err := s.UpsertSecret(tenantID, in)
	if err != nil {
		tb.Fatalf("upsert %s: %v", in, err)
	}
	return res
}

// openValue reads a secret's value and refresh token through Store.Read.
func openValue(s *Store, tenantID, secretID string) (value, refresh string, version int, err error) {
	err = s.Read(func(r *Reader) error {
		v, rt, ver, err := r.OpenValue(tenantID, secretID)
		if err != nil {
			return err
		}
		value, refresh, version = string(v.Reveal()), string(rt.Reveal()), ver
		return nil
	})
	return value, refresh, version, err
}

func mustOpenValue(tb testing.TB, s *Store, tenantID, secretID string) string {
	tb.Helper()
	v, _, _, err := openValue(s, tenantID, secretID)
	if err != nil {
		tb.Fatalf("open value of %s: %v", secretID, err)
	}
	return v
}

// dump is every key and value of every bucket of the store, as text, for
// comparing the whole content of a store before and after an operation.
func dump(tb testing.TB, s *Store) []string {
	tb.Helper()
	var out []string
	err := s.backend.View(func(tx storage.Tx) error {
		for _, name := range allBuckets {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				out = append(out, fmt.Sprintf("%s/%q=%q", name, k, v))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("dump: %v", err)
	}
	sort.Strings(out)
	return out
}

// listing is what the public listing methods show of a tenant.
type listing struct {
	Secrets   []Secret
	Bindings  []Binding
	Sandboxes []Sandbox
}

func list(tb testing.TB, s *Store, tenantID string) listing {
	tb.Helper()
	var l listing
	var err error
	if l.Secrets, err = s.ListSecrets(tenantID, SecretFilter{}); err != nil {
		tb.Fatal(err)
	}
	if l.Bindings, err = s.ListBindings(tenantID, BindingFilter{}); err != nil {
		tb.Fatal(err)
	}
	if l.Sandboxes, err = s.ListSandboxes(tenantID, SandboxFilter{}); err != nil {
		tb.Fatal(err)
	}
	return l
}

// rawRow reads a bucket's raw value at k.
func rawRow(tb testing.TB, s *Store, bucket, k []byte) []byte {
	tb.Helper()
	var out []byte
	if err := s.backend.View(func(tx storage.Tx) error {
		out = bytes.Clone(tx.Bucket(bucket).Get(k))
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if out == nil {
		tb.Fatalf("no row %q in %s", k, bucket)
	}
	return out
}

// openAt opens the vault at path (NoSync as given: false exercises
// journalSync) on newTestBackend and closes it when the test ends.
func openAt(tb testing.TB, path string, key *MasterKey, noSync bool) *Store {
	tb.Helper()
	cfg := Config{Path: path, MasterKey: key, Timeout: 200 * time.Millisecond, NoSync: noSync}
	cfg.Backend = newTestBackend(tb, cfg)
	s, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// openNode opens the vault at path as node: its own journal beside path,
// on the backend the test gives (newTestBackend's when nil).
func openNode(tb testing.TB, path, node string, key *MasterKey, backend storage.Backend) *Store {
	tb.Helper()
	cfg := Config{
		Path: path, JournalPath: filepath.Join(filepath.Dir(path), node+".journal"), NodeID: node,
		MasterKey: key, Timeout: 200 * time.Millisecond, NoSync: true, Backend: backend,
	}
	if cfg.Backend == nil {
		cfg.Backend = newTestBackend(tb, cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		tb.Fatalf("open as %s: %v", node, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// allRows exports every row of the file, oldest first.
func allRows(tb testing.TB, s *Store) []audit.Row {
	tb.Helper()
	var out []audit.Row
	if err := s.ExportAudit("", time.Time{}, func(r audit.Row) error { out = append(out, r); return nil }); err != nil {
		tb.Fatal(err)
	}
	return out
}

func requestRow(tenantID string, t time.Time, i int) audit.Row {
	return audit.Row{
		ID: audit.NewID(t), Time: t, Kind: audit.KindRequest, TenantID: tenantID,
		WorkspaceID: "w1", OwnerUserID: "u1", ExternalUserID: fmt.Sprintf("eu%d", i%3), ExternalWorkspaceID: "ew1",
		ExternalProjectID: "p1", SandboxID: fmt.Sprintf("sbx_%d", i%5),
		SecretID: "sec_a", SecretName: "openai", SecretVersion: 2, Level: "tenant",
		Host: "api.openai.com", Method: "POST", Path: "/v1/chat/completions", Status: 200, Outcome: "substituted",
		DurationMS: 12.5, Uses: []audit.Use{{Name: "openai", SecretID: "sec_a", Version: 2, Level: "tenant", Location: "header", Action: "substituted"}},
	}
}
