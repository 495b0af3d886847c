package vault

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/egressd/egressd/vault/storage"
)

// Every sealed value names the master key that wraps its data key
// (sealed.KeyID), and so does the vault's canary: the canary's key is the
// vault's current master key, the one new values are sealed with. A
// process holds a key ring: one key, or, around an online rekey of a store
// shared by several replicas, two (the old and the new; Config.OtherKeys).
//
//   - A value opens with the ring's key that its wrap names, whichever it
//     is, so values wrapped by the old key and by the new one both open
//     while the ring holds both.
//   - A value is sealed with the key the canary names, read inside the
//     write's own transaction (sealKey): a replica that has not heard of a
//     rekey yet still seals with the new key, since updates are serialized
//     with the rekey's transaction. Nothing is ever written under a key
//     the vault is no longer sealed by.
//   - When the canary names a key this process does not hold (the store
//     was rekeyed to a key that was not given to this replica), every
//     write that seals fails with ErrMasterKeyNotHeld, values wrapped by
//     that key do not open (the same error), and KeyStatus says so for
//     /readyz. What this process holds in clear in its caches (values it
//     opened before) stays valid: a rekey changes no value, and the change
//     feed still drops what other replicas change.
//
// The ring learns the canary's key at Open, in every write that seals, and
// when the change feed delivers topicMasterKey (published by a rekey) or
// storage.TopicAll.

// topicMasterKey is the change feed topic a rekey publishes: the canary
// names a new key. No tenant id has this form.
const topicMasterKey = "#master-key"

// MaxMasterKeys is how many keys a ring holds at most: the current key
// and the next (or previous) one.
const MaxMasterKeys = 2

// opener opens a sealed value: a MasterKey, or a keyRing with the key the
// value names.
type opener interface {
	open(s *sealed, ad []byte) ([]byte, error)
}

// keyRing is the master keys a Store holds and the key its vault is
// sealed by.
type keyRing struct {
	keys  []*MasterKey // keys[0] seals a new vault
	state atomic.Pointer[keyState]

	mu        sync.Mutex
	listeners []func(keyID string, held bool)
}

// keyState is the vault's current master key as last seen in its canary.
type keyState struct {
	id  string     // the canary's key id
	key *MasterKey // nil when the ring does not hold it
}

func newKeyRing(first *MasterKey, others []*MasterKey) (*keyRing, error) {
	r := &keyRing{keys: []*MasterKey{first}}
	for _, k := range others {
		if k == nil {
			return nil, fmt.Errorf("%w: nil key in the ring", ErrBadMasterKey)
		}
		if r.byID(k.id) != nil {
			return nil, fmt.Errorf("%w: key %s given twice", ErrBadMasterKey, k.id)
		}
		r.keys = append(r.keys, k)
	}
	if len(r.keys) > MaxMasterKeys {
		return nil, fmt.Errorf("%w: %d keys given, at most %d (the current one and the next)", ErrBadMasterKey, len(r.keys), MaxMasterKeys)
	}
	r.state.Store(&keyState{id: first.id, key: first})
	return r, nil
}

// byID is the ring's key with id, or nil.
func (r *keyRing) byID(id string) *MasterKey {
	for _, k := range r.keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// ids lists the ring's key ids, for errors.
func (r *keyRing) ids() string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return strings.Join(ids, " and ")
}

// notHeld is the error for a key id the ring lacks.
func (r *keyRing) notHeld(id string) error {
	return fmt.Errorf("%w (master key %s; this process holds %s): give it a master key file that holds %s and restart it",
		ErrMasterKeyNotHeld, id, r.ids(), id)
}

// open opens s with the ring's key that wraps it.
func (r *keyRing) open(s *sealed, ad []byte) ([]byte, error) {
	k := r.byID(s.KeyID)
	if k == nil {
		return nil, r.notHeld(s.KeyID)
	}
	return k.open(s, ad)
}

// observe records that the canary names key id, and returns its state.
// A change is told to the listeners (OnKeyChange), once.
func (r *keyRing) observe(id string) *keyState {
	if st := r.state.Load(); st.id == id {
		return st
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.state.Load(); st.id == id { // another caller got here first
		return st
	}
	st := &keyState{id: id, key: r.byID(id)}
	r.state.Store(st)
	for _, fn := range r.listeners {
		fn(id, st.key != nil)
	}
	return st
}

// current is the key the canary named when last seen, or the ring's first
// key when the ring does not hold it (for the list cursors' MAC only).
func (r *keyRing) current() *MasterKey {
	if st := r.state.Load(); st.key != nil {
		return st.key
	}
	return r.keys[0]
}

// canaryKeyID reads the id of the key that seals the vault from its
// canary in meta.
func canaryKeyID(meta storage.Bucket) (string, error) {
	raw := meta.Get(metaCanary)
	if raw == nil {
		return "", fmt.Errorf("vault: no canary: not an egressd vault")
	}
	var c sealed
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("vault: corrupt canary: %w", err)
	}
	return c.KeyID, nil
}

// sealKey is the key to seal with in the write transaction tx: the one the
// canary names in tx, so that a write made just after a rekey another
// process committed seals with the new key. ErrMasterKeyNotHeld when the
// ring lacks it.
func (s *Store) sealKey(tx storage.Tx) (*MasterKey, error) {
	id, err := canaryKeyID(tx.Bucket(bMeta))
	if err != nil {
		return nil, err
	}
	st := s.keys.observe(id)
	if st.key == nil {
		return nil, s.keys.notHeld(id)
	}
	return st.key, nil
}

// reloadKey reads the canary again (a rekey was announced, or the change
// feed lost track). An error leaves the state as it was: every write that
// seals reads the canary again anyway.
func (s *Store) reloadKey() {
	_ = s.view(func(tx storage.Tx) error {
		id, err := canaryKeyID(tx.Bucket(bMeta))
		if err == nil {
			s.keys.observe(id)
		}
		return err
	})
}

// KeyStatus is nil while this process holds the master key its vault is
// sealed by (as last seen: at Open, on a write, or when a rekey was
// announced on the change feed), and an ErrMasterKeyNotHeld otherwise,
// naming the key to give it. /readyz reports it: such a replica can
// neither store new values nor open the ones the rekey re-wrapped.
func (s *Store) KeyStatus() error {
	if st := s.keys.state.Load(); st.key == nil {
		return s.keys.notHeld(st.id)
	}
	return nil
}

// OnKeyChange registers fn to be called when this Store sees that its
// vault is sealed by another master key than before (a rekey by another
// process: keyring.go), with the key's id and whether this process holds
// it. It is called once per change, possibly inside a write transaction:
// fn must be quick (a log line).
func (s *Store) OnKeyChange(fn func(keyID string, held bool)) {
	s.keys.mu.Lock()
	s.keys.listeners = append(s.keys.listeners, fn)
	s.keys.mu.Unlock()
}

// MasterKeyIDs lists the ids of the keys this process holds, the first
// the one a new vault is sealed with.
func (s *Store) MasterKeyIDs() []string {
	ids := make([]string, len(s.keys.keys))
	for i, k := range s.keys.keys {
		ids[i] = k.id
	}
	return ids
}
