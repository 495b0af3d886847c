package server

import (
	"errors"

	"github.com/egressd/egressd/vault"
)

// errChangesMissed is changesReady's answer while the store's change feed
// is not healthy.
var errChangesMissed = errors.New("the store's change listener is down or catching up: writes of other replicas may be missed, so this replica reads every answer from the store until it has caught up")

// changesReady is the /readyz check of the store's change feed (issue
// 14): nil on a store of one process (bbolt), and on a shared one while
// its listener hears every write of the other replicas; errChangesMissed
// otherwise. Meanwhile the resolver bypasses its caches (never stale),
// but the replica is not ready: the load balancer should prefer others.
func changesReady(st *vault.Store) error {
	if st.ChangesHealthy() {
		return nil
	}
	return errChangesMissed
}
