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

// flowKeep is how long an OAuth flow's record is kept after it was
// started: flows expire after 10 minutes, and their status answers
// GET .../oauth/flows/{id} for a day after.
const flowKeep = 24 * time.Hour

// startRetention prunes audit rows older than keep and OAuth flows older
// than flowKeep, now and then every hour, in bounded transactions. The
// returned func stops it and waits.
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
			if n, err := st.PruneOAuthFlows(time.Now().Add(-flowKeep)); err != nil {
				log.Error("oauth flow retention", "err", err.Error())
			} else if n > 0 {
				log.Info("oauth flow retention: pruned old flows", "flows", n, "older_than", flowKeep.String())
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
