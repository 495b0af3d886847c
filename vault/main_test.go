package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// The suite runs on boltstore. With EGRESSD_TEST_STORE=postgres and
// EGRESSD_TEST_POSTGRES (a DSN of a server the tests may create and drop
// schemas in) it runs on pgstore instead, a schema per store a test opens.
// Run it as .ci/run step 2b does:
//
//	pg_virtualenv sh -c 'EGRESSD_TEST_STORE=postgres EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test ./vault/'
const (
	testStoreEnv    = "EGRESSD_TEST_STORE"
	testPostgresEnv = "EGRESSD_TEST_POSTGRES"
)

func TestMain(m *testing.M) {
	switch kind := os.Getenv(testStoreEnv); kind {
	case "", "bolt":
	case "postgres":
		if os.Getenv(testPostgresEnv) == "" {
			fmt.Fprintln(os.Stderr, testStoreEnv+"=postgres needs "+testPostgresEnv+" (a DSN)")
			os.Exit(2)
		}
		newTestBackend = openPostgresTestBackend
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want bolt or postgres\n", testStoreEnv, kind)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// testDSN is the DSN of the test PostgreSQL, or skips tb naming how to
// run it.
func testDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(testPostgresEnv)
	if dsn == "" {
		tb.Skip("no PostgreSQL: set " + testPostgresEnv + " to a DSN, e.g. (as root, Debian's postgresql installed) " +
			`pg_virtualenv sh -c 'EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test ./vault/', or run .ci/run`)
	}
	return dsn
}

// testSchemas are the schemas the running tests made, by the cfg.Path
// they stand for.
var testSchemas sync.Map

// openPostgresTestBackend opens a pgstore in the schema that stands for
// cfg.Path: made empty (and dropped when the test that made it ends) on
// the first call for a path, the same data again on later calls, as
// reopen needs.
func openPostgresTestBackend(tb testing.TB, cfg Config) storage.Backend {
	tb.Helper()
	dsn := testDSN(tb)
	schema := testSchemaOf(cfg.Path)
	if _, seen := testSchemas.LoadOrStore(schema, true); !seen {
		// New: cfg.Path is in the test's own TempDir.
		tb.Cleanup(func() {
			dropSchema(tb, dsn, schema)
			testSchemas.Delete(schema)
		})
	}
	return openPostgres(tb, dsn, schema)
}

// testSchemaOf is the schema that stands for a test store's path.
func testSchemaOf(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "egressd_vt_" + hex.EncodeToString(sum[:8])
}

// onPostgres says the suite runs on pgstore.
func onPostgres() bool { return os.Getenv(testStoreEnv) == "postgres" }

// storeDump is every byte the store named by path holds, for tests that
// look for what must not be there, run while no vault has it open: the
// bbolt file as it is on disk, or, on PostgreSQL, every row of the
// schema's kv table (bucket, key and value of each).
func storeDump(tb testing.TB, path string) []byte {
	tb.Helper()
	if !onPostgres() {
		raw, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		return raw
	}
	st := openPostgres(tb, testDSN(tb), testSchemaOf(path))
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := st.Pool().Query(ctx, "SELECT bucket, key, value FROM "+pgx.Identifier{st.Schema(), "kv"}.Sanitize()+" ORDER BY bucket, key")
	if err != nil {
		tb.Fatal(err)
	}
	var out []byte
	for rows.Next() {
		var bucket string
		var k, v []byte
		if err := rows.Scan(&bucket, &k, &v); err != nil {
			tb.Fatal(err)
		}
		out = append(append(append(append(append(out, bucket...), 0), k...), 0), v...)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// openPostgres opens the store in schema with a small pool.
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

// freshPostgresSchema names a new schema, dropped when tb ends.
func freshPostgresSchema(tb testing.TB, dsn string) string {
	tb.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "egressd_vt_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() { dropSchema(tb, dsn, schema) })
	return schema
}

// adminPool is one connection pool for the suite's DROP SCHEMAs (a new
// connection for each would cost its authentication each time).
var adminPool struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

func dropSchema(tb testing.TB, dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adminPool.once.Do(func() { adminPool.pool, adminPool.err = pgxpool.New(context.Background(), dsn) })
	if adminPool.err != nil {
		tb.Errorf("drop schema %s: %v", schema, adminPool.err)
		return
	}
	if _, err := adminPool.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		tb.Errorf("drop schema %s: %v", schema, err)
	}
}

// openCfg is Open on newTestBackend's store for cfg.Path when cfg has no
// Backend; a failed Open closes that backend again.
func openCfg(tb testing.TB, cfg Config) (*Store, error) {
	tb.Helper()
	if cfg.Backend != nil {
		return Open(cfg)
	}
	cfg.Backend = newTestBackend(tb, cfg)
	s, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
	}
	return s, err
}

// testDSNOrEmpty is the test PostgreSQL's DSN, or "" without one.
func testDSNOrEmpty() string { return os.Getenv(testPostgresEnv) }
