package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault"
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

// startAnnounce records, now and every vault.AnnounceEvery, that this
// replica serves the shared store and which master keys it holds (an
// online rekey refuses a key a serving replica lacks). The returned func
// stops it and withdraws the announcement: a replica stopped cleanly
// holds up no rekey.
func startAnnounce(st *vault.Store, log *slog.Logger) func() {
	announce := func() {
		if err := st.Announce(); err != nil {
			log.Warn("could not announce this replica's master keys in the store", "err", err.Error())
		}
	}
	announce()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(vault.AnnounceEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				announce()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
			if err := st.Withdraw(); err != nil {
				log.Warn("could not withdraw this replica's announcement from the store", "err", err.Error())
			}
		})
	}
}
