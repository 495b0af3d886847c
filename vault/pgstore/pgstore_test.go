package pgstore

import (
	"context"
	"errors"
	"github.com/egressd/egressd/internal/pgtest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
	"github.com/egressd/egressd/vault/storage/storagetest"
)

// testEnv names the variable that holds the DSN of a PostgreSQL these
// tests may create and drop schemas in.
const testEnv = "EGRESSD_TEST_POSTGRES"

// testDSN is the DSN of the test server, or skips the test.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(testEnv)
	if dsn == "" {
		t.Skip("no PostgreSQL: set " + testEnv + " to a DSN, e.g. (as root, Debian's postgresql installed) " +
			`pg_virtualenv sh -c 'EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test ./vault/pgstore/', or run .ci/run`)
	}
	return dsn
}

// freshSchema names a schema of its own for this test, dropped at its end.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	return pgtest.FreshSchema(t, dsn, "egressd_test_")
}

// openTest opens a store in a fresh schema, closed at the test's end.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	dsn := testDSN(t)
	if opts.Schema == "" {
		opts.Schema = freshSchema(t, dsn)
	}
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTest(t, Options{}) })
}

// Pages of 3 rows: every walk of the suite crosses many page edges.
func TestStorageSmallPages(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTest(t, Options{PageSize: 3}) })
}

// Two replicas starting together migrate once: the others wait for the
// lock and find nothing left to do.
func TestMigrateConcurrently(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	ctx := context.Background()
	type result struct{ before, after int }
	results := make(chan result, 6)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			before, after, err := Migrate(ctx, dsn, Options{Schema: schema})
			if err != nil {
				t.Errorf("Migrate: %v", err)
			}
			results <- result{before, after}
		})
	}
	for range 2 {
		wg.Go(func() {
			s, err := Open(ctx, dsn, Options{Schema: schema})
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(results)
	fromZero := 0
	for r := range results {
		if r.after != SchemaVersion() {
			t.Errorf("Migrate ended at version %d, want %d", r.after, SchemaVersion())
		}
		if r.before == 0 {
			fromZero++
		}
	}
	if fromZero > 1 {
		t.Errorf("%d Migrate calls found an empty schema and migrated it", fromZero)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, max int
	q := "SELECT count(*), max(version) FROM " + pgx.Identifier{schema, "schema_migrations"}.Sanitize()
	if err := conn.QueryRow(ctx, q).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || max != SchemaVersion() {
		t.Errorf("schema_migrations holds %d rows up to version %d, want %d", n, max, SchemaVersion())
	}
	// Migrating a current schema changes nothing.
	before, after, err := Migrate(ctx, dsn, Options{Schema: schema})
	if err != nil || before != SchemaVersion() || after != SchemaVersion() {
		t.Errorf("Migrate again = %d, %d, %v", before, after, err)
	}
}

// A schema that a newer egressd migrated is refused, and left as it is.
func TestNewerSchemaRefused(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	newer := SchemaVersion() + 1
	q := "INSERT INTO " + pgx.Identifier{s.Schema(), "schema_migrations"}.Sanitize() + " (version, name) VALUES ($1, 'from_the_future')"
	if _, err := s.Pool().Exec(ctx, q, newer); err != nil {
		t.Fatal(err)
	}
	dsn := testDSN(t)
	_, err := Open(ctx, dsn, Options{Schema: s.Schema()})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"version " + strconv.Itoa(newer), "up to " + strconv.Itoa(SchemaVersion())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %q", err, want)
		}
	}
	if _, _, err := Migrate(ctx, dsn, Options{Schema: s.Schema()}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Migrate of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}
