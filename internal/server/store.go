package server

import (
	"context"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault/pgstore"
)

// storeOpenTimeout bounds reaching a shared store (and migrating it) at
// start.
const storeOpenTimeout = 30 * time.Second

// openStore opens the PostgreSQL store of --store, or returns nil for the
// bbolt default (which datadir.Open opens in the data dir). pgstore.Open
// connects and applies the migrations this egressd knows under the
// schema's advisory lock, so replicas starting together migrate once, and
// refuses a schema newer than it knows. Its errors never quote the DSN;
// they are given as --store's, with the DSN's password masked.
func openStore(s config.Serve) (*pgstore.Store, error) {
	if !s.Store.Postgres() {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
	defer cancel()
	st, err := pgstore.Open(ctx, s.Store.DSN(), pgstore.Options{Schema: s.StoreSchema})
	if err != nil {
		return nil, &config.FlagError{Flag: "--store", Value: s.Store.Redacted(), Err: err}
	}
	return st, nil
}

// storeName names the store in logs and errors: the DSN without its
// password, and the schema.
func storeName(s config.Serve) string {
	return s.Store.Redacted() + " (schema " + s.StoreSchema + ")"
}
