package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/pgtest"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// The tests open a Log the way the vault does: on a backend whose buckets
// are created first (the vault's meta bucket and Buckets), its journal
// beside the store. The store is a bbolt file by default; with
// EGRESSD_TEST_STORE=postgres (and EGRESSD_TEST_POSTGRES, a DSN) it is a
// pgstore schema named after the file's path, so a test that reopens a
// path gets the same store again, as with the file.

const testStoreEnv = "EGRESSD_TEST_STORE"

func onPostgres() bool { return os.Getenv(testStoreEnv) == "postgres" }

// testDSN is the test server's DSN, or skips tb without one.
func testDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(pgtest.Env)
	if dsn == "" {
		tb.Skip("no PostgreSQL: set " + pgtest.Env + " to a DSN (pg_virtualenv), or run .ci/run")
	}
	return dsn
}

// testLog is a Log and the backend it was opened on, which its Close
// closes too (as vault.Store.Close does).
type testLog struct {
	*Log
	path string
}

// Close closes the log, then its backend.
func (l *testLog) Close() error {
	err := l.Log.Close()
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the store's path: the bbolt file, or what names the schema.
func (l *testLog) Path() string { return l.path }

var testSchemas sync.Map

// schemaOf is the pgstore schema of the store at path.
func schemaOf(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "egressd_at_" + hex.EncodeToString(sum[:8])
}

// openPostgres opens schema on dsn.
func openPostgres(tb testing.TB, dsn, schema string) *pgstore.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		tb.Fatalf("pgstore: %v", err)
	}
	return s
}

// newTestBackend opens the store at path with the log's buckets: empty
// the first time, the same data again later.
func newTestBackend(tb testing.TB, path string, noSync bool) storage.Backend {
	tb.Helper()
	var b storage.Backend
	if onPostgres() {
		dsn := testDSN(tb)
		schema := schemaOf(path)
		if _, seen := testSchemas.LoadOrStore(schema, true); !seen {
			tb.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := pgtest.DropSchemas(ctx, dsn, schema); err != nil {
					tb.Error(err)
				}
				testSchemas.Delete(schema)
			})
		}
		b = openPostgres(tb, dsn, schema)
	} else {
		return openBolt(tb, path, noSync)
	}
	ensureBuckets(tb, b)
	return b
}

// openBolt opens the bbolt file at path with the log's buckets, whatever
// backend the tests run on.
func openBolt(tb testing.TB, path string, noSync bool) storage.Backend {
	tb.Helper()
	b, err := boltstore.Open(path, boltstore.Options{Timeout: time.Second, NoSync: noSync, FreelistMap: true})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	ensureBuckets(tb, b)
	return b
}

// ensureBuckets creates the buckets a vault creates for the log.
func ensureBuckets(tb testing.TB, b storage.Backend) {
	tb.Helper()
	if err := b.EnsureBuckets(append([][]byte{bMeta}, Buckets()...)...); err != nil {
		b.Close()
		tb.Fatal(err)
	}
}

// openCfg opens a Log with cfg on the store at path: cfg.Backend (its
// buckets created as the vault creates them), or newTestBackend's; the journal at path + ".audit-journal" unless
// cfg.JournalPath is set. The log and its backend close when tb ends.
func openCfg(tb testing.TB, path string, cfg Config) (*testLog, error) {
	tb.Helper()
	if cfg.Backend == nil {
		cfg.Backend = newTestBackend(tb, path, cfg.NoSync)
	} else {
		ensureBuckets(tb, cfg.Backend)
	}
	if cfg.JournalPath == "" {
		cfg.JournalPath = path + ".audit-journal"
	}
	l, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		return nil, err
	}
	tl := &testLog{Log: l, path: path}
	tb.Cleanup(func() { tl.Close() })
	return tl, nil
}

// openAt opens the log of the store at path (NoSync as given: false
// exercises journalSync).
func openAt(tb testing.TB, path string, noSync bool) *testLog {
	tb.Helper()
	l, err := openCfg(tb, path, Config{NoSync: noSync})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return l
}

// openTest opens a fresh log in tb.TempDir(); opts adjust the Config.
func openTest(tb testing.TB, opts ...func(*Config)) *testLog {
	tb.Helper()
	cfg := Config{NoSync: true}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := openCfg(tb, tempPath(tb), cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	return l
}

// reopen closes l and opens its store again.
func reopen(tb testing.TB, l *testLog) *testLog {
	tb.Helper()
	if err := l.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	return openAt(tb, l.path, true)
}

// tempPath is a fresh store's path.
func tempPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "vault.db") }

// needBoltFile skips a test that reads or writes l's bbolt file itself
// when the tests run on another backend, and returns the file.
func needBoltFile(tb testing.TB, l *testLog) *boltstore.Store {
	tb.Helper()
	b, ok := l.db.(*boltstore.Store)
	if !ok {
		tb.Skipf("needs a bbolt file; the store is a %T", l.db)
	}
	return b
}

// updateClosed runs fn in an Update on the store at path, with no log
// open on it.
func updateClosed(tb testing.TB, path string, fn func(tx storage.Tx) error) {
	tb.Helper()
	b := newTestBackend(tb, path, true)
	defer b.Close()
	if err := b.Update(fn); err != nil {
		tb.Fatal(err)
	}
}

func countKeys(b storage.Bucket) int {
	n := 0
	b.ForEach(func(_, _ []byte) error {
		n++
		return nil
	})
	return n
}
