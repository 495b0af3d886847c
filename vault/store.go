// Package vault owns egressd's persistent state: a bbolt file holding
// tenants, API keys, secrets, bindings, sandboxes, placeholders and tenant
// settings, and the audit log. Secret values are sealed with envelope encryption: a random
// XChaCha20-Poly1305 data key per secret version, wrapped by the master key,
// with associated data binding each ciphertext to its tenant, secret id and
// version. No read path of this package returns a value except OpenValue.
package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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

	// The audit log (audit.go): rows, and one index per filterable id.
	bAudit = []byte("audit") // tenant \0 time \0 row id → AuditRow

	allBuckets = append([][]byte{bMeta, bTenants, bTenantNames, bKeys, bSecrets, bSecretIdx, bBindings, bBindByRes, bBindBySecret, bSandboxes, bSandboxOwner, bPlaceholders, bSandboxPH, bAudit}, auditIndexBuckets()...)

	metaCanary = []byte("canary")
	metaSchema = []byte("schema")
)

const schemaVersion = "1"

// Config configures Open.
type Config struct {
	// Path is the bbolt file. Required.
	Path string
	// MasterKey wraps the data keys. Required.
	MasterKey *MasterKey
	// Timeout bounds the wait for the file lock; zero means 1s. Another
	// process holding the file then fails Open with ErrLocked.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoSync skips fsync on commit. Only for tests and benchmarks.
	NoSync bool
}

// Store is an open vault. Its methods are safe for concurrent use.
//
// A Store returned by As (or WithAudit) shares the open file with the one
// it came from and differs only in who its writes are recorded as; closing
// any of them closes the file.
type Store struct {
	*core
	// audit says who acts through this Store; zero means its writes
	// record no audit row.
	audit adminAudit
	// reserved lets writes set metadata keys starting with
	// ReservedMetadataPrefix (WithReservedMetadata).
	reserved bool
}

// core is the open file and what every Store sharing it shares.
type core struct {
	db  *bolt.DB
	key *MasterKey
	now func() time.Time

	mu        sync.RWMutex
	listeners []func(tenantID string)

	log *auditLog
}

// Open opens (creating if absent) the vault file and checks that the master
// key is the one the vault was created with.
func Open(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("vault: no path")
	}
	if cfg.MasterKey == nil {
		return nil, errors.New("vault: no master key")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.Timeout, NoSync: cfg.NoSync, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("vault: open %s: %w", cfg.Path, ErrLocked)
		}
		return nil, fmt.Errorf("vault: open %s: %w", cfg.Path, err)
	}
	s := &Store{core: &core{db: db, key: cfg.MasterKey, now: cfg.Now}}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	j, err := s.openAuditJournal(cfg.Path+".audit-journal", cfg.NoSync)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.log = newAuditLog(db, j)
	return s, nil
}

// init creates the buckets and the canary on a new file, or checks the
// canary on an existing one.
func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("vault: create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bMeta)
		if v := meta.Get(metaSchema); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("vault: file has schema %q, this build reads %q", v, schemaVersion)
		}
		raw := meta.Get(metaCanary)
		if raw == nil {
			c, err := s.key.seal([]byte("egressd canary"), []byte("egressd/canary"))
			if err != nil {
				return err
			}
			if err := putJSON(meta, metaCanary, c); err != nil {
				return err
			}
			return meta.Put(metaSchema, []byte(schemaVersion))
		}
		return checkCanary(raw, s.key)
	})
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

// Close waits for the audit rows being committed, then closes the file.
// A second Close does nothing.
func (s *Store) Close() error {
	err := s.log.close()
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// MasterKeyID is the fingerprint of the key in use.
func (s *Store) MasterKeyID() string { return s.key.ID() }

// OnChange registers fn to be called after every committed write, with the
// tenant it touched, before the write method returns. The resolver uses it
// to drop cached entries before any API answer acknowledges the write.
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
// listeners that tenantID changed. A failed fn changed nothing and tells
// nobody.
func (s *Store) update(tenantID string, fn func(tx *bolt.Tx) error) error {
	err := s.db.Update(fn)
	if err == nil && tenantID != "" {
		s.changed(tenantID)
	}
	return err
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error { return s.db.View(fn) }

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

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
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
