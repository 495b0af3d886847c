package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/internal/pgtest"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// pgNodeDir is the data dir of the egressd that serves on PostgreSQL: its
// node id and audit journal, as a replica keeps them (the vault and the
// CA are the store's).
const pgNodeDir = "pg-node"

// storeOpenTimeout bounds reaching PostgreSQL (and migrating a schema).
const storeOpenTimeout = 30 * time.Second

// pgStore is the benchmark's schema on -store: a copy of the vault that
// setup made, which the PG phases serve from.
type pgStore struct {
	DSN, Schema string
}

// preparePG makes a fresh schema on dsn and copies the benchmark's vault
// (the bbolt file of w.Dir, the server stopped) into it as `egressd store
// copy` does, the CA along. drop removes the schema with everything in it.
func preparePG(dsn string, w *world) (pg *pgStore, drop func() error, err error) {
	pg = &pgStore{DSN: dsn, Schema: pgtest.SchemaName("egress_bench_")}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		return pgtest.DropSchemas(ctx, dsn, pg.Schema)
	}
	open := func() (storage.Backend, error) { return pg.open() }
	if _, err := datadir.CopyToStore(datadir.Dir(w.Dir), keySource(w.Dir), open, "schema "+pg.Schema, time.Second); err != nil {
		drop()
		return nil, nil, fmt.Errorf("copy the vault to PostgreSQL: %w", err)
	}
	return pg, drop, nil
}

func (pg *pgStore) open() (*pgstore.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
	defer cancel()
	return pgstore.Open(ctx, pg.DSN, pgstore.Options{Schema: pg.Schema})
}

func keySource(dir string) datadir.KeySource {
	return datadir.KeySource{File: filepath.Join(dir, masterKeyFile)}
}

// openVault opens the vault a proxy child serves, as serve opens it: the
// bbolt file of spec.Dir, or, for a PG phase, the store through
// datadir.OpenShared with pgNodeDir as the replica's data dir. The parent
// opens it the same way (after the child exited) to count audit rows.
func openVault(spec childSpec) (*vault.Store, error) {
	if spec.PGSchema == "" {
		key, err := vault.LoadMasterKeyFile(filepath.Join(spec.Dir, masterKeyFile))
		if err != nil {
			return nil, err
		}
		node, err := datadir.Dir(spec.Dir).NodeID()
		if err != nil {
			return nil, err
		}
		return vault.Open(vault.Config{Path: filepath.Join(spec.Dir, vaultFile), MasterKey: key, NodeID: node, NoSync: spec.NoSync})
	}
	pg := &pgStore{DSN: spec.PGDSN, Schema: spec.PGSchema}
	backend, err := pg.open()
	if err != nil {
		return nil, fmt.Errorf("open schema %s: %w", pg.Schema, err)
	}
	o, err := datadir.OpenShared(datadir.Dir(filepath.Join(spec.Dir, pgNodeDir)), keySource(spec.Dir), backend, "schema "+pg.Schema)
	if err != nil {
		return nil, err
	}
	return o.Store, nil
}

// countAuditRows counts the audit rows of tenantID from since on, in the
// vault of spec, through the vault's own API (whatever the backend keeps
// them in): what reached the store.
func countAuditRows(spec childSpec, tenantID string, since time.Time) (int64, error) {
	st, err := openVault(spec)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var n int64
	err = st.ExportAudit(tenantID, since, func(audit.Row) error { n++; return nil })
	return n, err
}
