package golden

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/egressd/egressd/internal/pgtest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
)

// The cases run on a bbolt vault each. With EGRESSD_TEST_STORE=postgres
// and EGRESSD_TEST_POSTGRES (a DSN of a server the tests may create and
// drop schemas in) each case's vault is a fresh PostgreSQL schema instead,
// dropped at the end, and the expectations are the same: .ci/run runs
//
//	pg_virtualenv sh -c 'EGRESSD_TEST_STORE=postgres EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test ./internal/golden/'
func TestMain(m *testing.M) {
	switch kind := os.Getenv("EGRESSD_TEST_STORE"); kind {
	case "", "bolt":
		os.Exit(m.Run())
	case "postgres":
	default:
		fmt.Fprintf(os.Stderr, "EGRESSD_TEST_STORE=%q: want bolt or postgres\n", kind)
		os.Exit(2)
	}
	dsn := os.Getenv("EGRESSD_TEST_POSTGRES")
	if dsn == "" {
		fmt.Fprintln(os.Stderr, "EGRESSD_TEST_STORE=postgres needs EGRESSD_TEST_POSTGRES (a DSN)")
		os.Exit(2)
	}
	var (
		mu      sync.Mutex
		schemas []string
	)
	openVault = func(dir string) (*vault.Store, error) {
		var b [6]byte
		rand.Read(b[:])
		schema := "egressd_golden_" + hex.EncodeToString(b[:])
		mu.Lock()
		schemas = append(schemas, schema)
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := pgstore.Open(ctx, dsn, pgstore.Options{Schema: schema, MaxConns: 4})
		if err != nil {
			return nil, err
		}
		s, err := vault.Open(vault.Config{Backend: st, JournalPath: filepath.Join(dir, "audit.journal"), NodeID: "golden", MasterKey: vault.NewMasterKey(), NoSync: true})
		if err != nil {
			st.Close()
		}
		return s, err
	}
	code := m.Run()
	if err := dropSchemas(dsn, schemas); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func dropSchemas(dsn string, schemas []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgtest.DropSchemas(ctx, dsn, schemas...); err != nil {
		return fmt.Errorf("drop the test schemas: %w", err)
	}
	return nil
}
