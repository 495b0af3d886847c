package vault

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// copyTargets are the stores a copy goes into: a new bbolt file always
// (the copy runs over the seam, the same for every backend), and a fresh
// PostgreSQL schema when the tests have a server.
func copyTargets(t *testing.T) map[string]func(t *testing.T) storage.Backend {
	out := map[string]func(t *testing.T) storage.Backend{
		"bolt": func(t *testing.T) storage.Backend {
			b, err := boltstore.Open(filepath.Join(t.TempDir(), "copy.db"), boltstore.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
	}
	if dsn := testDSNOrEmpty(); dsn != "" {
		out["postgres"] = func(t *testing.T) storage.Backend {
			b := openPostgres(t, dsn, freshPostgresSchema(t, dsn))
			t.Cleanup(func() { b.Close() })
			return b
		}
	}
	return out
}

func storeKeys(t *testing.T, b storage.Backend) int {
	t.Helper()
	n := 0
	as, err := audit.StoreOf(b)
	if err != nil {
		t.Fatal(err)
	}
	err = b.View(func(tx storage.Tx) error {
		// Audit rows count once each, whatever the layout.
		for _, name := range copyBuckets(nil) {
			if bk := tx.Bucket(name); bk != nil {
				n += countBucket(bk)
			}
		}
		a, err := countAuditRows(tx, as)
		n += a
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A populated vault (tenants, keys, secrets with versions and refresh
// tokens, bindings, sandboxes with tokens, placeholders, OAuth state,
// audit rows) copied into an empty store is the same vault there: every
// key, counted per bucket, each value opens with the same master key, the
// tokens and placeholders work, and the CA goes along sealed.
func TestCopyStore(t *testing.T) {
	s := openTest(t)
	key := s.key
	w := fill(t, s)
	if _, err := s.CreateOAuthFlow(w.tenant.ID, OAuthFlowInput{Flow: OAuthFlow{Provider: "github", ExpiresAt: time.Now().Add(time.Hour)},
		State: "state-copy-0123456789", Verifier: "verifier-copy", AuthorizeURL: "https://provider.test/authorize?state=x"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := s.AppendAudit(requestRow(w.tenant.ID, time.Now().Add(-time.Duration(i)*time.Minute), i)); err != nil {
			t.Fatal(err)
		}
	}
	wantAudit := len(allRows(t, s))
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	src := newTestBackend(t, Config{Path: path, Timeout: time.Second, NoSync: true})
	defer src.Close()
	before := storeKeys(t, src)
	var f fakeCA
	caCert, caKey, _ := f.create()

	for name, target := range copyTargets(t) {
		t.Run(name, func(t *testing.T) {
			// A wrong master key is refused before anything is written.
			dst := target(t)
			if _, err := CopyStore(dst, src, CopyOptions{MasterKey: NewMasterKey()}); !errors.Is(err, ErrWrongMasterKey) {
				t.Fatalf("wrong key: %v, want ErrWrongMasterKey", err)
			}
			if n := storeKeys(t, dst); n != 0 {
				t.Fatalf("a refused copy wrote %d keys", n)
			}
			res, err := CopyStore(dst, src, CopyOptions{MasterKey: key, CACertPEM: caCert, CAKeyPEM: caKey})
			if err != nil {
				t.Fatal(err)
			}
			sealed := 0 // every secret's value, and its refresh token if it has one
			for _, sec := range w.secrets {
				sealed++
				if w.refresh[sec.ID] != "" {
					sealed++
				}
			}
			if res.Keys != before+1 || !res.SharedCA || res.ValuesOpened != sealed {
				t.Errorf("result %+v: want %d keys (the source's and the CA), the CA, %d values opened", res, before+1, sealed)
			}
			if res.Buckets["audit"] != wantAudit || res.Buckets["oauth_flows"] != 1 {
				t.Errorf("audit %d (want %d), oauth_flows %d", res.Buckets["audit"], wantAudit, res.Buckets["oauth_flows"])
			}
			// Into a store that holds anything: refused, nothing changed.
			if _, err := CopyStore(dst, src, CopyOptions{MasterKey: key}); !errors.Is(err, ErrStoreNotEmpty) {
				t.Fatalf("second copy: %v, want ErrStoreNotEmpty", err)
			}
			if n := storeKeys(t, dst); n != res.Keys {
				t.Fatalf("the refused copy changed the store: %d keys, were %d", n, res.Keys)
			}

			c, err := Open(Config{Backend: dst, JournalPath: filepath.Join(t.TempDir(), "journal"), NodeID: "copy", MasterKey: key, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w.check(t, c)
			if got := len(allRows(t, c)); got != wantAudit {
				t.Errorf("%d audit rows in the copy, want %d", got, wantAudit)
			}
			sum := sha256.Sum256([]byte("state-copy-0123456789"))
			if _, u, err := c.OpenOAuthConnect(mustFlowID(t, c, w.tenant.ID), sum[:]); err != nil || u != "https://provider.test/authorize?state=x" {
				t.Errorf("OAuth flow in the copy: %q %v", u, err)
			}
			gotCert, gotKey, created, err := c.SharedCA(nil)
			if err != nil || created || string(gotCert) != string(caCert) || string(gotKey) != string(caKey) {
				t.Errorf("shared CA in the copy: created %v, %v", created, err)
			}
		})
	}
}

// mustFlowID is the id of the tenant's one OAuth flow.
func mustFlowID(t *testing.T, s *Store, tenantID string) string {
	t.Helper()
	var id string
	err := s.view(func(tx storage.Tx) error {
		return tx.Bucket(bOAuthFlows).ForEach(func(_, v []byte) error {
			var f storedFlow
			if err := unmarshal(v, &f); err != nil {
				return err
			}
			if f.TenantID == tenantID {
				id = f.ID
			}
			return nil
		})
	})
	if err != nil || id == "" {
		t.Fatalf("no OAuth flow: %v", err)
	}
	return id
}

func TestCopyStoreRefusals(t *testing.T) {
	s := openTest(t)
	key := s.key
	var f fakeCA
	if _, _, _, err := s.SharedCA(f.create); err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	s.Close()
	src := newTestBackend(t, Config{Path: path, Timeout: time.Second, NoSync: true})
	defer src.Close()
	dst := copyTargets(t)["bolt"](t)
	cert, k, _ := f.create()
	if _, err := CopyStore(dst, src, CopyOptions{MasterKey: key, CACertPEM: cert, CAKeyPEM: k}); err == nil {
		t.Fatal("a second CA over the source's shared CA was taken")
	}
	if _, err := CopyStore(dst, src, CopyOptions{MasterKey: key, CACertPEM: cert}); err == nil {
		t.Fatal("a CA without its key was taken")
	}
	// Not a vault.
	empty := copyTargets(t)["bolt"](t)
	if _, err := CopyStore(dst, empty, CopyOptions{MasterKey: key}); err == nil {
		t.Fatal("copied a store that is no vault")
	}
	if n := storeKeys(t, dst); n != 0 {
		t.Fatalf("refused copies wrote %d keys", n)
	}
	// The source's own shared CA is copied as it is.
	res, err := CopyStore(dst, src, CopyOptions{MasterKey: key})
	if err != nil || !res.SharedCA {
		t.Fatalf("copy with the source's CA: %+v %v", res, err)
	}
}
