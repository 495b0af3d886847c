package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// storeFlags are the flags of a tool (init, audit export, vault rekey)
// that can work on a shared PostgreSQL store instead of a data dir.
type storeFlags struct {
	store  config.Store
	schema string
}

func (s *storeFlags) add(fs *flag.FlagSet) {
	fs.Var(&s.store, "store", "a shared PostgreSQL store instead of the data dir: a `DSN` (postgres://user@host/db or host=... dbname=...; printed with its password masked); the master key (for the tools that read values) comes from --master-key-file or "+config.MasterKeyEnv)
	fs.StringVar(&s.schema, "store-schema", config.DefaultStoreSchema, "PostgreSQL schema of a PostgreSQL --store")
}

// shared says a PostgreSQL --store was given.
func (s *storeFlags) shared() bool { return s.store.Postgres() }

// check refuses what a tool on a shared store cannot take: a bad DSN, no
// master key given explicitly (a data dir's default master.key means
// nothing for a store). --data-dir is not used with --store.
func (s *storeFlags) check(fs *flag.FlagSet, getenv func(string) string) error {
	if err := s.store.Check(); err != nil {
		return err
	}
	if !config.IsSet(fs, "master-key-file") && getenv(config.MasterKeyEnv) == "" {
		return errors.New("with --store the master key is required: pass --master-key-file or set " + config.MasterKeyEnv)
	}
	return nil
}

// name names the store in output and errors, without its password.
func (s *storeFlags) name() string { return s.store.Redacted() + " (schema " + s.schema + ")" }

// open connects to the store and applies its migrations, as serve does.
func (s *storeFlags) open() (storage.Backend, error) { return s.openStore(false) }

// openExisting connects to a store that is there already, at this
// egressd's schema version, and creates or migrates nothing: for the
// tools that only read it.
func (s *storeFlags) openExisting() (storage.Backend, error) { return s.openStore(true) }

func (s *storeFlags) openStore(existing bool) (storage.Backend, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := pgstore.Open(ctx, s.store.DSN(), pgstore.Options{Schema: s.schema, NoMigrate: existing})
	if err != nil {
		return nil, &config.FlagError{Flag: "--store", Value: s.store.Redacted(), Err: err}
	}
	return st, nil
}

// keySource is the master key of a tool on a shared store: the file given
// or the environment's key (check made sure one is there).
func (s *storeFlags) keySource(fs *flag.FlagSet, file string, getenv func(string) string) (datadir.KeySource, error) {
	return datadir.NewKeySource("", file, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
}

// openDataDirVault opens the vault of an existing data dir for a tool run
// with the server stopped (audit export, vault reindex): its master key
// from keyFile, the environment or DIR/master.key; no data dir, vault or
// key is created.
func openDataDirVault(fs *flag.FlagSet, dataDir, keyFile string, getenv func(string) string) (*vault.Store, error) {
	dir := datadir.Dir(dataDir)
	if ok, err := dir.HasVault(); err != nil || !ok {
		return nil, fmt.Errorf("no vault in %s", dir)
	}
	src, err := datadir.NewKeySource(dir, keyFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
	if err != nil {
		return nil, err
	}
	key, _, err := src.Load(false)
	if err != nil {
		return nil, err
	}
	return datadir.OpenVault(dir, key, src)
}
