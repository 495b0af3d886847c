// Package vault owns egressd's persistent state: tenants, API keys,
// secrets, bindings, sandboxes, placeholders and tenant settings, kept in
// a vault/storage backend (a bbolt file through vault/boltstore by
// default), and opens the audit log (package audit) on the same backend:
// Store's audit methods are its doors, and each audited write commits its
// admin row in its own transaction. Secret values are sealed with envelope
// encryption: a random XChaCha20-Poly1305 data key per secret version,
// wrapped by the master key, with associated data binding each ciphertext
// to its tenant, secret id and version, so a backend holds only
// ciphertext. No read path of this package returns a value except
// OpenValue.
package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// Buckets of the file. Keys that join ids use 0x00, which no id contains.
var (
	bMeta         = []byte("meta")
	bTenants      = []byte("tenants")       // tenant id → Tenant
	bTenantNames  = []byte("tenant_names")  // name → tenant id
	bKeys         = []byte("api_keys")      // token hash → APIKey
	bSecrets      = []byte("secrets")       // tenant \0 secret id → storedSecret
	bSecretIdx    = []byte("secret_idx")    // tenant \0 scope \0 owner \0 name → secret id
	bBindings     = []byte("bindings")      // tenant \0 binding id → Binding
	bBindByRes    = []byte("binding_res")   // tenant \0 resource id \0 binding id → nil
	bBindBySecret = []byte("binding_sec")   // tenant \0 secret id \0 binding id → nil
	bSandboxes    = []byte("sandboxes")     // tenant \0 sandbox id → storedSandbox
	bSandboxOwner = []byte("sandbox_owner") // sandbox id → tenant id
	bPlaceholders = []byte("placeholders")  // placeholder core → Placeholder
	bSandboxPH    = []byte("sandbox_ph")    // sandbox id \0 name → placeholder text

	// The audit log (package audit): its rows, then one index per
	// filterable id.
	bAudit = []byte(audit.RowsBucket)

	allBuckets = append([][]byte{bMeta, bTenants, bTenantNames, bKeys, bSecrets, bSecretIdx, bBindings, bBindByRes, bBindBySecret, bSandboxes, bSandboxOwner, bPlaceholders, bSandboxPH, bReplicas, bSourceAddrs}, audit.Buckets()...)

	metaCanary = []byte("canary")
	metaSchema = []byte("schema")
)

const schemaVersion = "1"

// Config configures Open.
type Config struct {
	// Path is the bbolt file, opened with vault/boltstore (created if
	// absent), when Backend is nil: the embedded default, one process.
	// With Backend set nothing is opened at Path; it only places the
	// audit journal when JournalPath is empty. Store.Path returns it.
	Path string
	// Backend is the store to keep the vault in (vault/pgstore for a
	// cluster); nil means the bbolt file at Path. Open creates the
	// vault's buckets in it and takes it over once it succeeds:
	// Store.Close closes it. A failed Open leaves it open, the caller's.
	// Timeout does not apply to it (it was opened already); NoSync
	// applies to the journal only.
	Backend storage.Backend
	// JournalPath is the audit journal (audit/journal.go), the
	// request rows' write-ahead file. It is node-local whatever the
	// backend: only this process writes it, and a row is on disk there
	// before a value leaves, even while a remote store is slow. Empty
	// means Path + ".audit-journal", beside the bbolt file; with a
	// Backend, Path or JournalPath is required. The store records how far
	// into this journal the audit rows are indexed under NodeID.
	JournalPath string
	// NodeID names this node's journal in the store: how far its rows are
	// indexed is kept per node id, so replicas sharing a backend, each
	// with its own journal, never overwrite each other's position. Give
	// each data dir its own, kept across restarts (egressd keeps it in
	// DATA/node.id); 1 to 64 bytes of [A-Za-z0-9_-]. Empty means the one
	// position of a single-node vault; the first Open with a NodeID moves
	// that position to the node's.
	NodeID string
	// MasterKey wraps the data keys. Required. A new vault is sealed with
	// it.
	MasterKey *MasterKey
	// OtherKeys are master keys this process holds besides MasterKey:
	// around an online rekey of a shared store (RekeyStore), the old or
	// the new one (keyring.go). An existing vault opens when its canary
	// names any key of the ring, and new values are sealed with that
	// one. Nil means MasterKey alone; at most MaxMasterKeys keys in all.
	OtherKeys []*MasterKey
	// Timeout bounds the wait for the bbolt file's lock; zero means 1s.
	// Another process holding the file then fails Open with ErrLocked.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoSync skips fsync on commit (of the bbolt file and of the audit
	// journal). Only for tests and benchmarks.
	NoSync bool
	// AuditSpoolMax bounds the request rows this node journals while it
	// cannot put them into the store (a shared store unreachable): past
	// it AppendAudit refuses new rows with ErrAuditUnavailable until the
	// store takes them again. Zero means audit.DefaultSpoolMax.
	AuditSpoolMax int
}

// Store is an open vault. Its methods are safe for concurrent use.
//
// A Store returned by As (or WithAudit) shares the open backend (the
// file) with the one it came from and differs only in who its writes are
// recorded as; closing any of them closes the backend.
type Store struct {
	*core
	// audit says who acts through this Store; zero means its writes
	// record no audit row.
	audit adminAudit
	// reserved lets writes set metadata keys starting with
	// ReservedMetadataPrefix (WithReservedMetadata).
	reserved bool
}

// core is the open store and what every Store sharing it shares.
type core struct {
	backend storage.Backend
	path    string // Config.Path
	keys    *keyRing
	// key is Config.MasterKey, the ring's first key, kept for the tests
	// that reopen or rekey a vault with it; the vault seals with
	// sealKey's and opens with keys.
	key *MasterKey
	now func() time.Time
	// node is Config.NodeID: this process's name among a shared store's
	// replicas (replicas.go, the audit journal's position).
	node string

	// feed is backend's change feed, nil for a backend of one process
	// (changes.go).
	feed storage.ChangeFeed

	mu        sync.RWMutex
	listeners []func(tenantID string)

	// log is the audit log: its request rows' journal, committer and
	// indexer (package audit).
	log *audit.Log
}

// Open opens (creating if absent) the vault in its backend, the bbolt file
// at cfg.Path by default, and checks that the master key is the one the
// vault was created with.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" && (cfg.Backend == nil || cfg.JournalPath == "") {
		return nil, errors.New("vault: no path")
	}
	if cfg.MasterKey == nil {
		return nil, errors.New("vault: no master key")
	}
	if !validNodeID(cfg.NodeID) {
		return nil, errors.New("vault: node id: want 1 to 64 bytes of [A-Za-z0-9_-]")
	}
	keys, err := newKeyRing(cfg.MasterKey, cfg.OtherKeys)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.JournalPath == "" {
		cfg.JournalPath = cfg.Path + ".audit-journal"
	}
	if err := os.MkdirAll(filepath.Dir(cfg.JournalPath), 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	backend := cfg.Backend
	if backend == nil {
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		bs, err := boltstore.Open(cfg.Path, boltstore.Options{Timeout: cfg.Timeout, NoSync: cfg.NoSync, FreelistMap: true})
		if err != nil {
			if errors.Is(err, storage.ErrLocked) {
				return nil, fmt.Errorf("vault: open %s: %w", cfg.Path, ErrLocked)
			}
			return nil, fmt.Errorf("vault: open %s: %w", cfg.Path, err)
		}
		backend = bs
	}
	// fail closes what Open opened, never a Backend it was given.
	fail := func(err error) (*Store, error) {
		if cfg.Backend == nil {
			backend.Close()
		}
		return nil, err
	}
	s := &Store{core: &core{backend: backend, path: cfg.Path, keys: keys, key: cfg.MasterKey, now: cfg.Now, node: cfg.NodeID}}
	if err := s.init(); err != nil {
		return fail(err)
	}
	if err := s.ensureListIndexes(); err != nil {
		return fail(err)
	}
	l, err := audit.Open(audit.Config{Backend: backend, JournalPath: cfg.JournalPath, NodeID: cfg.NodeID, SpoolMax: cfg.AuditSpoolMax, Now: cfg.Now, NoSync: cfg.NoSync})
	if err != nil {
		return fail(err)
	}
	s.log = l
	if feed, ok := backend.(storage.ChangeFeed); ok {
		s.feed = feed
		feed.Subscribe(s.remoteChange)
	}
	return s, nil
}

// init creates the buckets, then the canary on a new store, or checks the
// canary of an existing one.
func (s *Store) init() error {
	if err := s.backend.EnsureBuckets(allBuckets...); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return s.backend.Update(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(metaSchema); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("vault: file has schema %q, this build reads %q", v, schemaVersion)
		}
		raw := meta.Get(metaCanary)
		if raw == nil {
			c, err := s.keys.keys[0].seal([]byte("egressd canary"), []byte("egressd/canary"))
			if err != nil {
				return err
			}
			if err := putJSON(meta, metaCanary, c); err != nil {
				return err
			}
			return meta.Put(metaSchema, []byte(schemaVersion))
		}
		return checkCanaryRing(raw, s.keys)
	})
}

// checkCanaryRing checks that the ring holds the key the canary names and
// that it opens the canary, and makes it the ring's current key.
func checkCanaryRing(raw []byte, r *keyRing) error {
	var c sealed
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("vault: corrupt canary: %w", err)
	}
	k := r.byID(c.KeyID)
	if k == nil {
		return fmt.Errorf("vault: %w: the vault was sealed with master key %s, the key given is %s", ErrWrongMasterKey, c.KeyID, r.ids())
	}
	if err := checkCanary(raw, k); err != nil {
		return err
	}
	r.observe(c.KeyID)
	return nil
}

// HasVault reports whether backend holds a vault (its canary), without
// creating anything: a tool that reads an existing vault refuses an empty
// store rather than make a vault there.
func HasVault(backend storage.Backend) (bool, error) {
	var ok bool
	err := backend.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		ok = meta != nil && meta.Get(metaCanary) != nil
		return nil
	})
	return ok, err
}

func checkCanary(raw []byte, k *MasterKey) error {
	var c sealed
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("vault: corrupt canary: %w", err)
	}
	if c.KeyID != k.id {
		return fmt.Errorf("vault: %w: the vault was sealed with master key %s, the key given is %s", ErrWrongMasterKey, c.KeyID, k.id)
	}
	if _, err := k.open(&c, []byte("egressd/canary")); err != nil {
		return fmt.Errorf("vault: %w: canary did not open", ErrWrongMasterKey)
	}
	return nil
}

// Close waits for the audit rows being committed, then closes the backend
// (the file). A second Close does nothing.
func (s *Store) Close() error {
	err := s.log.Close()
	if cerr := s.backend.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is Config.Path: the bbolt file's path by default.
func (s *Store) Path() string { return s.path }

// MasterKeyID is the fingerprint of the key the vault is sealed by (as
// last seen; see KeyStatus), the one new values are sealed with.
func (s *Store) MasterKeyID() string { return s.keys.state.Load().id }

// OnChange registers fn to be called after every committed write, with the
// tenant it touched, before the write method returns. The resolver uses it
// to drop cached entries before any API answer acknowledges the write. On
// a backend shared by several replicas, fn is also called for the writes
// of the others as their change feed delivers them, and with AllTenants
// when it cannot tell which tenants changed (changes.go).
func (s *Store) OnChange(fn func(tenantID string)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

func (s *Store) changed(tenantID string) {
	s.mu.RLock()
	ls := s.listeners
	s.mu.RUnlock()
	for _, fn := range ls {
		fn(tenantID)
	}
}

// update runs fn in a write transaction and, once it committed, tells the
// listeners that tenantID changed; with a change feed, the transaction
// also tells the other replicas' (publish). A failed fn changed nothing
// and tells nobody.
func (s *Store) update(tenantID string, fn func(tx storage.Tx) error) error {
	err := s.backend.Update(func(tx storage.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return s.publish(tx, tenantID)
	})
	if err == nil && tenantID != "" {
		s.changed(tenantID)
	}
	return err
}

func (s *Store) view(fn func(tx storage.Tx) error) error { return s.backend.View(fn) }

func (s *Store) stamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func key(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

func prefix(parts ...string) []byte { return append(key(parts...), 0) }

func putJSON(b storage.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func getJSON(b storage.Bucket, k []byte, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("vault: corrupt record: %w", err)
	}
	return true, nil
}

func unmarshal(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("vault: corrupt record: %w", err)
	}
	return nil
}

// validNodeID accepts Config.NodeID: empty, or 1 to 64 bytes of
// [A-Za-z0-9_-].
func validNodeID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
