// Package pgtest gives tests that need PostgreSQL a schema of their own on
// the server that EGRESSD_TEST_POSTGRES names (.ci/run sets it inside
// pg_virtualenv), dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env is the variable that holds the test server's DSN.
const Env = "EGRESSD_TEST_POSTGRES"

// SchemaName is prefix followed by 12 random hex digits.
func SchemaName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// FreshSchema names a new schema (SchemaName(prefix)) and drops it, with
// everything in it, when tb ends; a failed drop fails tb.
func FreshSchema(tb testing.TB, dsn, prefix string) string {
	tb.Helper()
	name := SchemaName(prefix)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropSchemas(ctx, dsn, name); err != nil {
			tb.Error(err)
		}
	})
	return name
}

// DropSchemas drops the named schemas, if they exist, with everything in
// them, over one connection.
func DropSchemas(ctx context.Context, dsn string, names ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("drop schemas: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range names {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", s, err)
		}
	}
	return nil
}
