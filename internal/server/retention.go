package server

import (
	"log/slog"
	"sync"
	"time"

	"github.com/egressd/egressd/vault"
)

// pruneEvery is how often old audit rows are looked for.
const pruneEvery = time.Hour

// pruneBatch bounds one pruning transaction, so writers never wait long.
const pruneBatch = 1000

// startRetention prunes audit rows older than keep, now and then every
// hour, in bounded transactions. The returned func stops it and waits.
func startRetention(st *vault.Store, keep time.Duration, log *slog.Logger) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			n, err := st.PruneAudit(time.Now().Add(-keep), pruneBatch)
			if err != nil {
				log.Error("audit retention", "err", err.Error())
			} else if n > 0 {
				log.Info("audit retention: pruned old rows", "rows", n, "older_than", keep.String())
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(stop) })
		wg.Wait()
	}
}
