package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

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
//
// For a shared store the source may hold two keys (vault.ParseMasterKeys):
// around an online rekey, the current key and the next.
func (k KeySource) CheckShared() error {
	if k.FromEnv() {
		_, err := k.LoadRing()
		return err
	}
	_, err := vault.LoadMasterKeysFile(k.File)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist; with --store a PostgreSQL DSN every replica needs the same master key: pass --master-key-file or set %s (a new one: 32 random bytes in base64, e.g. head -c 32 /dev/urandom | base64)",
			ErrNoMasterKey, k.File, config.MasterKeyEnv)
	case errors.Is(err, vault.ErrBadMasterKey):
		return &config.FlagError{Flag: "--master-key-file", Value: k.File,
			Err: errors.New("not a master key (want 32 bytes in base64 or hex; or two such keys, one a line, around a rekey)")}
	default:
		return &config.FlagError{Flag: "--master-key-file", Value: k.File, Err: err}
	}
}

// LoadRing returns the master keys of the source: one, or two around an
// online rekey of a shared store (vault.ParseMasterKeys), the first the
// one a new vault is sealed with. A missing file is ErrNoMasterKey.
func (k KeySource) LoadRing() ([]*vault.MasterKey, error) {
	if k.FromEnv() {
		ks, err := vault.ParseMasterKeys([]byte(k.text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.MasterKeyEnv, err)
		}
		return ks, nil
	}
	ks, err := vault.LoadMasterKeysFile(k.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; restore it, pass --master-key-file, or set %s",
			ErrNoMasterKey, k.File, config.MasterKeyEnv)
	}
	return ks, err
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
	keys, err := src.LoadRing()
	if err != nil {
		return nil, err
	}
	node, err := dir.NodeID()
	if err != nil {
		return nil, err
	}
	st, err := vault.Open(vault.Config{Backend: backend, JournalPath: dir.Path(AuditJournalFile), NodeID: node, MasterKey: keys[0], OtherKeys: keys[1:]})
	switch {
	case errors.Is(err, vault.ErrWrongMasterKey):
		return nil, fmt.Errorf("%w: the key from %s (id %s) cannot open the vault in %s; every replica needs the key the store was created (or last rekeyed) with (%v)",
			ErrWrongMasterKey, src, strings.Join(ids(keys), " and "), name, err)
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
	return &Opened{Store: st, CA: ca, MasterKeyID: st.MasterKeyID(), CACreated: created, NodeID: node, Where: name, Shared: true}, nil
}

func ids(keys []*vault.MasterKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID()
	}
	return out
}

// OpenTool opens the vault in backend, a shared store, for a one-off
// command run apart from the replicas (init, audit export): as OpenShared,
// with a temporary directory for the command's node id and (empty) audit
// journal, removed by done, which also closes the vault. Only admin rows
// are written, in the transactions of their writes. With mustExist an
// empty store is ErrNoVault (and nothing is created in it); without, the
// vault and its CA are created there as the first replica would. It takes
// backend over, as OpenShared does.
func OpenTool(src KeySource, backend storage.Backend, name string, mustExist bool) (o *Opened, done func() error, err error) {
	if mustExist {
		ok, err := vault.HasVault(backend)
		if err == nil && !ok {
			err = fmt.Errorf("%w: %s holds no vault (start a replica on it, or run egressd init --store, first)", ErrNoVault, name)
		}
		if err != nil {
			backend.Close()
			return nil, nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "egressd-tool-")
	if err != nil {
		backend.Close()
		return nil, nil, err
	}
	o, err = OpenShared(Dir(tmp), src, backend, name)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return o, func() error {
		err := o.Store.Close()
		if rerr := os.RemoveAll(tmp); err == nil {
			err = rerr
		}
		return err
	}, nil
}
