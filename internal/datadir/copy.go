package datadir

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// CopyOutcome is what egressd store copy prints: the copy's counts per
// bucket (checked against the source's), and what was checked in it.
type CopyOutcome struct {
	From string `json:"from"`
	To   string `json:"to"`
	vault.CopyResult
	// CA is the fingerprint of the CA copied in as the store's shared CA.
	CA          string `json:"ca_sha256"`
	MasterKeyID string `json:"master_key_id"`
}

// CopyToStore copies the vault of dir (the server stopped) into the empty
// shared store that openDst opens (named to in the outcome and errors,
// without its password), and the data dir's CA into it as the store's
// shared CA, so that replicas on the store present the CA sandboxes
// already trust:
//
//  1. the master key (required: it checks the vault and seals the CA's
//     key) and the CA files are read and checked before anything is
//     written;
//  2. the vault is opened once as egressd serve opens it, which puts the
//     rows its audit journal holds that a crash left out into the file
//     (and needs the server stopped: ErrInUse otherwise), then closed;
//  3. every bucket of the file is copied key by key, values as the
//     ciphertext they are (vault.CopyStore: one transaction, into a
//     store that holds nothing; the counts and every value checked).
//
// The data dir is left as it was, ready to serve again should the copy
// be abandoned.
func CopyToStore(dir Dir, src KeySource, openDst func() (storage.Backend, error), to string, lockTimeout time.Duration) (CopyOutcome, error) {
	out := CopyOutcome{From: string(dir), To: to}
	had, err := dir.HasVault()
	if err != nil {
		return out, fmt.Errorf("check vault: %w", err)
	}
	if !had {
		return out, fmt.Errorf("%w: %s does not exist", ErrNoVault, dir.DB())
	}
	key, _, err := src.Load(false)
	if err != nil {
		return out, err
	}
	out.MasterKeyID = key.ID()
	certPEM, err := os.ReadFile(dir.CACert())
	if err != nil {
		return out, fmt.Errorf("the CA sandboxes trust: %w", err)
	}
	keyPEM, err := os.ReadFile(dir.Path(certs.CAKeyFile))
	if err != nil {
		return out, fmt.Errorf("the CA's key: %w", err)
	}
	defer clear(keyPEM)
	ca, err := certs.ParseCA(certPEM, keyPEM)
	if err != nil {
		return out, fmt.Errorf("the CA in %s: %w", dir, err)
	}
	out.CA = ca.Fingerprint()

	st, err := OpenVault(dir, key, src)
	if err != nil {
		return out, err
	}
	if err := st.Close(); err != nil {
		return out, fmt.Errorf("close the vault: %w", err)
	}
	bs, err := boltstore.Open(dir.DB(), boltstore.Options{Timeout: lockTimeout})
	if err != nil {
		return out, fmt.Errorf("%w; stop it first (%s: %v)", ErrInUse, dir.DB(), err)
	}
	defer bs.Close()
	names, err := bs.BucketNames()
	if err != nil {
		return out, err
	}
	dst, err := openDst()
	if err != nil {
		return out, err
	}
	defer dst.Close()
	res, err := vault.CopyStore(dst, bs, vault.CopyOptions{MasterKey: key, Buckets: names, CACertPEM: certPEM, CAKeyPEM: keyPEM})
	out.CopyResult = res
	if errors.Is(err, vault.ErrStoreNotEmpty) {
		return out, fmt.Errorf("copy into %s: %w; a copy goes into an empty store only (it never merges two vaults): name another --store-schema, or drop this one to copy again", to, err)
	}
	if err != nil {
		return out, fmt.Errorf("copy into %s: %w", to, err)
	}
	return out, nil
}
