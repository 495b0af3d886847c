package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema's migrations: migrations/NNNN_name.sql, numbered from 1 with
// no gap, each applied once in its own transaction with its row in
// schema_migrations. A released migration is never edited: a change is a
// new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations in order.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names { // Glob sorts, and versions have four digits
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 || v != len(ms)+1 {
			return nil, fmt.Errorf("pgstore: migration file %s: want %04d_name.sql", n, len(ms)+1)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	return ms, nil
}

// SchemaVersion is the newest schema version this egressd knows.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate applies the migrations the store of dsn lacks, as Open does,
// and returns the schema's version before and after. It is what
// `egressd store migrate` runs.
func Migrate(ctx context.Context, dsn string, opts Options) (before, after int, err error) {
	opts = opts.withDefaults()
	opts.MaxConns = 1
	pool, err := newPool(ctx, dsn, opts)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	return migrate(ctx, pool, opts.Schema)
}

// migrate holds the schema's migration lock (a session advisory lock:
// replicas that start together wait for each other, and the second finds
// nothing left to do), creates the schema and schema_migrations if
// missing, refuses a version newer than it knows, and applies the rest.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) (before, after int, err error) {
	ms, err := loadMigrations()
	if err != nil {
		return 0, 0, err
	}
	latest := ms[len(ms)-1].version
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("pgstore: connect: %w", err)
	}
	defer conn.Release()
	const lock = "SELECT pg_advisory_lock($1::int4, hashtext($2::text))"
	const unlock = "SELECT pg_advisory_unlock($1::int4, hashtext($2::text))"
	if _, err := conn.Exec(ctx, lock, lockMigrate, schema); err != nil {
		return 0, 0, fmt.Errorf("pgstore: migration lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, unlock, lockMigrate, schema); err != nil {
			conn.Conn().Close(uctx) // the session's end releases the lock
		}
	}()

	// Made only when missing, so that a role without CREATE can run on a
	// schema that `egressd store migrate` made with another.
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("pgstore: look up schema: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return 0, 0, fmt.Errorf("pgstore: create schema: %w", err)
		}
	}
	table := pgx.Identifier{schema, "schema_migrations"}.Sanitize()
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("pgstore: look up schema_migrations: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE TABLE "+table+` (
			version integer PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return 0, 0, fmt.Errorf("pgstore: create schema_migrations: %w", err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&before); err != nil {
		return 0, 0, fmt.Errorf("pgstore: read schema version: %w", err)
	}
	if before > latest {
		return before, before, fmt.Errorf("%w: it is at version %d, this egressd knows versions up to %d; run an egressd that knows version %d",
			ErrSchemaTooNew, before, latest, before)
	}
	for _, m := range ms[before:] {
		if err := applyMigration(ctx, conn.Conn(), schema, table, m); err != nil {
			return before, m.version - 1, err
		}
	}
	return before, latest, nil
}

// checkVersion is migrate for Options.NoMigrate: it refuses a schema that
// is missing or at another version than the newest this egressd knows,
// and changes nothing.
func checkVersion(ctx context.Context, pool *pgxpool.Pool, schema string) (before, after int, err error) {
	latest := SchemaVersion()
	table := pgx.Identifier{schema, "schema_migrations"}.Sanitize()
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("pgstore: look up schema_migrations: %w", err)
	}
	if !exists {
		return 0, 0, fmt.Errorf("pgstore: schema %q holds no egressd store", schema)
	}
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+table).Scan(&before); err != nil {
		return 0, 0, fmt.Errorf("pgstore: read schema version: %w", err)
	}
	switch {
	case before > latest:
		return before, before, fmt.Errorf("%w: it is at version %d, this egressd knows versions up to %d; run an egressd that knows version %d",
			ErrSchemaTooNew, before, latest, before)
	case before < latest:
		return before, before, fmt.Errorf("pgstore: schema %q is at version %d, this egressd needs %d: run egressd store migrate (or start a replica)", schema, before, latest)
	}
	return before, before, nil
}

func applyMigration(ctx context.Context, conn *pgx.Conn, schema, table string, m migration) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migration %04d_%s: %w", m.version, m.name, err)
	}
	defer tx.Rollback(ctx)
	for _, step := range []struct {
		sql  string
		args []any
	}{
		{"SET LOCAL search_path TO " + pgx.Identifier{schema}.Sanitize(), nil},
		{m.sql, nil},
		{"INSERT INTO " + table + " (version, name) VALUES ($1, $2)", []any{m.version, m.name}},
	} {
		if _, err := tx.Exec(ctx, step.sql, step.args...); err != nil {
			return fmt.Errorf("pgstore: migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: migration %04d_%s: %w", m.version, m.name, err)
	}
	return nil
}
