package datadir

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/storage"
)

// AuditJournalFile is the node's audit journal when the vault lives in a
// shared store. (Beside the bbolt file it is the file's name plus
// ".audit-journal".)
const AuditJournalFile = "audit.journal"

// CheckShared reports, without creating anything, whether the master key
// for a shared store can be loaded: the key in the environment parses, or
// the file exists and holds a key. A shared store never gets a key made
// for it: every replica must use the one key the store was created with,
// so it comes from the operator (the same file or EGRESSD_MASTER_KEY on
// each replica).
func (k KeySource) CheckShared() error {
	if k.FromEnv() {
		_, _, err := k.Load(false)
		return err
	}
	_, err := vault.LoadMasterKeyFile(k.File)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist; with --store a PostgreSQL DSN every replica needs the same master key: pass --master-key-file or set %s (a new one: 32 random bytes in base64, e.g. head -c 32 /dev/urandom | base64)",
			ErrNoMasterKey, k.File, config.MasterKeyEnv)
	case errors.Is(err, vault.ErrBadMasterKey):
		return &config.FlagError{Flag: "--master-key-file", Value: k.File,
			Err: errors.New("not a master key (want 32 bytes in base64 or hex)")}
	default:
		return &config.FlagError{Flag: "--master-key-file", Value: k.File, Err: err}
	}
}

// OpenShared opens the vault kept in backend, a store several replicas
// share (vault/pgstore), with dir as this node's data dir: its node id and
// its audit journal (AuditJournalFile) live there, nothing else of the
// vault does. name describes the store in errors and logs (a DSN without
// its password). The master key must exist (CheckShared); the CA is the
// store's shared one, created there by the first replica (sealed by the
// master key) and read by the others, so every replica presents the same
// CA. OpenShared takes backend over: closed by Opened.Store.Close, or
// here on failure.
func OpenShared(dir Dir, src KeySource, backend storage.Backend, name string) (*Opened, error) {
	o, err := openShared(dir, src, backend, name)
	if err != nil {
		backend.Close()
	}
	return o, err
}

func openShared(dir Dir, src KeySource, backend storage.Backend, name string) (*Opened, error) {
	if err := dir.Create(); err != nil {
		return nil, err
	}
	if err := src.CheckShared(); err != nil {
		return nil, err
	}
	key, _, err := src.Load(false)
	if err != nil {
		return nil, err
	}
	node, err := dir.NodeID()
	if err != nil {
		return nil, err
	}
	st, err := vault.Open(vault.Config{Backend: backend, JournalPath: dir.Path(AuditJournalFile), NodeID: node, MasterKey: key})
	switch {
	case errors.Is(err, vault.ErrWrongMasterKey):
		return nil, fmt.Errorf("%w: the key from %s (id %s) cannot open the vault in %s; every replica needs the key the store was created (or last rekeyed) with (%v)",
			ErrWrongMasterKey, src, key.ID(), name, err)
	case err != nil:
		return nil, fmt.Errorf("open the vault in %s: %w", name, err)
	}
	certPEM, keyPEM, created, err := st.SharedCA(certs.NewCAPEM)
	if err != nil {
		st.Close() // closes backend; OpenShared's Close again is a no-op
		return nil, fmt.Errorf("shared CA in %s: %w", name, err)
	}
	ca, err := certs.ParseCA(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("shared CA in %s: %w", name, err)
	}
	return &Opened{Store: st, CA: ca, MasterKeyID: key.ID(), CACreated: created, NodeID: node, Where: name, Shared: true}, nil
}
