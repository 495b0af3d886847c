package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

const storeUsage = `Usage:
  egressd store migrate --store DSN [--store-schema egressd]
      apply the PostgreSQL store's schema migrations; prints the versions before and after
  egressd store copy --from DATA_DIR --to DSN --master-key-file F [--store-schema egressd]
      copy a single node's vault (server stopped) and its CA into an empty PostgreSQL store
      (the master key may be given as EGRESSD_MASTER_KEY instead)
`

func runStore(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return runStoreMigrate(args[1:], stdout, stderr, getenv)
		case "copy":
			return runStoreCopy(args[1:], stdout, stderr, getenv)
		}
	}
	return subcommand("store", storeUsage, "migrate", runStoreMigrate, args, stdout, stderr, getenv)
}

// migrateOutcome is what store migrate prints.
type migrateOutcome struct {
	Store         config.Store `json:"store"`
	Schema        string       `json:"schema"`
	VersionBefore int          `json:"version_before"`
	VersionAfter  int          `json:"version_after"`
}

func runStoreMigrate(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var store config.Store
	fs := flag.NewFlagSet("store migrate", flag.ContinueOnError)
	fs.Var(&store, "store", "the PostgreSQL store: a `DSN` (postgres://user@host/db or host=... dbname=...; printed with its password masked) (required)")
	schema := fs.String("store-schema", config.DefaultStoreSchema, "PostgreSQL schema of the store")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the server and for another replica's migration")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	if !store.Postgres() {
		fmt.Fprintln(stderr, "egressd store migrate: --store must be a PostgreSQL DSN (the bbolt file needs no migration)")
		return 2
	}
	if err := store.Check(); err != nil {
		fmt.Fprintf(stderr, "egressd store migrate: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	before, after, err := pgstore.Migrate(ctx, store.DSN(), pgstore.Options{Schema: *schema})
	if err != nil {
		return fail(stderr, "store migrate", &config.FlagError{Flag: "--store", Value: store.Redacted(), Err: err})
	}
	if err := json.NewEncoder(stdout).Encode(migrateOutcome{store, *schema, before, after}); err != nil {
		return fail(stderr, "store migrate", err)
	}
	return 0
}

func runStoreCopy(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var to config.Store
	fs := flag.NewFlagSet("store copy", flag.ContinueOnError)
	from := fs.String("from", "", "the single node's data `dir` (its server stopped) (required)")
	fs.Var(&to, "to", "the PostgreSQL store to copy into, empty: a `DSN` (postgres://user@host/db or host=... dbname=...; printed with its password masked) (required)")
	schema := fs.String("store-schema", config.DefaultStoreSchema, "PostgreSQL schema of the store")
	keyFile := fs.String("master-key-file", "", "the vault's master key file, DIR/master.key of a single node ("+config.MasterKeyEnv+" holds the key itself instead); one of the two is required")
	lockTimeout := fs.Duration("lock-timeout", time.Second, "how long to wait for the vault file's lock")
	txTimeout := fs.Duration("tx-timeout", time.Hour, "how long the copy's one transaction may take")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "egressd store copy: %s\n", msg)
		fs.Usage()
		return 2
	}
	switch {
	case *from == "":
		return usage("--from is required")
	case !to.Postgres():
		return usage("--to must be a PostgreSQL DSN")
	case to.Check() != nil:
		return usage(to.Check().Error())
	case !config.IsSet(fs, "master-key-file") && getenv(config.MasterKeyEnv) == "":
		return usage("the master key is required (every replica will need it): pass --master-key-file (DIR/master.key of a single node) or set " + config.MasterKeyEnv)
	}
	dir := datadir.Dir(*from)
	src, err := datadir.NewKeySource(dir, *keyFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
	if err != nil {
		return fail(stderr, "store copy", err)
	}
	name := to.Redacted() + " (schema " + *schema + ")"
	openDst := func() (storage.Backend, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := pgstore.Open(ctx, to.DSN(), pgstore.Options{Schema: *schema, TxTimeout: *txTimeout})
		if err != nil {
			return nil, &config.FlagError{Flag: "--to", Value: to.Redacted(), Err: err}
		}
		return st, nil
	}
	out, err := datadir.CopyToStore(dir, src, openDst, name, *lockTimeout)
	if err != nil {
		return fail(stderr, "store copy", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fail(stderr, "store copy", err)
	}
	fmt.Fprintf(stderr, "egressd store copy: %d keys in %d buckets copied into %s and checked; %d sealed values open with master key %s; the CA (sha256 %s) is the store's shared CA. Start the replicas with --store and the same master key.\n",
		out.Keys, len(out.Buckets), name, out.ValuesOpened, out.MasterKeyID, out.CA)
	return 0
}
