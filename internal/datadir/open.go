package datadir

import (
	"errors"
	"fmt"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/vault"
)

// Opened is a data directory ready for use: the open vault and the CA, and
// what had to be created to get there.
type Opened struct {
	Store            *vault.Store
	CA               *certs.CA
	MasterKeyID      string
	MasterKeyCreated bool
	CACreated        bool
	// VaultCreated says the vault file did not exist before (bbolt only).
	VaultCreated bool
	// NodeID is the data dir's node id (DATA/node.id), which names this
	// node's audit journal in the vault.
	NodeID string
	// Where names the vault's store for logs: the bbolt file's path, or a
	// shared store's DSN without its password.
	Where string
	// Shared says the vault lives in a store that several replicas share
	// (OpenShared); its CA is then the store's shared CA.
	Shared bool
}

// Open creates, where absent, the directory, the master key, the vault and
// the CA, and opens them. A master key is created only together with a new
// vault: an existing vault without its key is ErrNoMasterKey. A vault held
// by a running server is ErrInUse, after at most the vault's lock timeout.
// The caller closes Opened.Store.
func Open(dir Dir, src KeySource) (*Opened, error) {
	if err := dir.Create(); err != nil {
		return nil, err
	}
	had, err := dir.HasVault()
	if err != nil {
		return nil, fmt.Errorf("check vault: %w", err)
	}
	key, keyCreated, err := src.Load(!had)
	if err != nil {
		return nil, err
	}
	st, err := OpenVault(dir, key, src)
	if err != nil {
		return nil, err
	}
	ca, caCreated, err := certs.LoadOrCreateCA(string(dir))
	if err != nil {
		st.Close()
		return nil, err
	}
	node, err := dir.NodeID() // OpenVault made it
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Opened{
		Store: st, CA: ca, MasterKeyID: key.ID(),
		MasterKeyCreated: keyCreated, CACreated: caCreated, VaultCreated: !had,
		NodeID: node, Where: dir.DB(),
	}, nil
}

// OpenVault opens the vault of dir with key, which came from src, and turns
// a lock held by another process into ErrInUse and a key that does not fit
// into ErrWrongMasterKey, each with what to do about it.
func OpenVault(dir Dir, key *vault.MasterKey, src KeySource) (*vault.Store, error) {
	node, err := dir.NodeID()
	if err != nil {
		return nil, err
	}
	st, err := vault.Open(vault.Config{Path: dir.DB(), MasterKey: key, NodeID: node})
	switch {
	case errors.Is(err, vault.ErrLocked):
		return nil, fmt.Errorf("%w; stop it first (%s is locked)", ErrInUse, dir.DB())
	case errors.Is(err, vault.ErrWrongMasterKey):
		return nil, wrongKey(dir, key, src, err)
	case err != nil:
		return nil, err
	}
	return st, nil
}

func wrongKey(dir Dir, key *vault.MasterKey, src KeySource, err error) error {
	return fmt.Errorf("%w: the key from %s (id %s) cannot open %s; if the vault was rekeyed, use the new master key (%v)",
		ErrWrongMasterKey, src, key.ID(), dir.DB(), err)
}
