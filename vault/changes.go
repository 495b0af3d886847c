package vault

import "github.com/egressd/egressd/vault/storage"

// AllTenants is the tenant id that OnChange listeners receive when every
// tenant may have changed: the backend's change feed lost track of what
// other replicas wrote (storage.TopicAll). A listener drops everything it
// holds. No tenant has this id.
const AllTenants = storage.TopicAll

// Writes that can change a walk or a value reach the caches of other
// replicas through the backend's change feed (storage.ChangeFeed, when the
// backend has one: vault/pgstore). Store.update publishes the write's
// tenant inside the write's transaction, so the change is announced if
// and only if it commits; Open subscribes, and each tenant another
// replica wrote is passed to the same OnChange listeners as this
// process's own writes (which the feed does not deliver back: update
// calls them itself, before the write returns). A delivery publishes
// nothing again.

// publish announces, inside tx, that tenantID changed; nothing without a
// change feed or a tenant.
func (s *Store) publish(tx storage.Tx, tenantID string) error {
	if s.feed == nil || tenantID == "" {
		return nil
	}
	return s.feed.Publish(tx, tenantID)
}

// remoteChange is the change feed's subscriber: another replica's write.
// A rekey (topicMasterKey) changes no value, so no listener hears of it:
// the key ring reads the canary again (keyring.go), as it does when the
// feed lost track (TopicAll), which may have hidden a rekey.
func (s *Store) remoteChange(topic string) {
	switch topic {
	case topicMasterKey:
		s.reloadKey()
	case storage.TopicAll:
		s.reloadKey()
		s.changed(AllTenants)
	default:
		s.changed(topic)
	}
}

// ChangesHealthy reports whether this Store hears every write of other
// replicas: always on a backend of one process (bbolt); on a shared one,
// whether its change feed is Healthy. While it is false, what was cached
// from this Store may be stale and must be read again (the resolver's
// Config.Fresh); /readyz reports it.
func (s *Store) ChangesHealthy() bool {
	if s.feed == nil {
		return true
	}
	return s.feed.Healthy()
}
