package vault

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTest opens a fresh vault in t.TempDir() with a new master key and
// closes it when the test ends. opts adjust the Config before Open.
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
	s, err := Open(cfg)
	if err != nil {
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

// reopen closes s and opens its file again with key.
func reopen(tb testing.TB, s *Store, key *MasterKey) *Store {
	tb.Helper()
	path := s.Path()
	if err := s.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	s2, err := Open(Config{Path: path, MasterKey: key, Timeout: 200 * time.Millisecond, NoSync: true})
	if err != nil {
		tb.Fatalf("reopen: %v", err)
	}
	tb.Cleanup(func() { s2.Close() })
	return s2
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

// dump is every key and value of every bucket of the file, as text, for
// comparing the whole content of a store before and after an operation.
func dump(tb testing.TB, s *Store) []string {
	tb.Helper()
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out = append(out, fmt.Sprintf("%s/%q=%q", name, k, v))
				return nil
			})
		})
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
	if err := s.db.View(func(tx *bolt.Tx) error {
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
