package vault

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// The shared CA: with several replicas on one store every one of them must
// present the same CA, so that a sandbox trusts whichever it reaches. The
// store keeps it under one key of the meta bucket: the certificate as it
// is, the private key sealed by the master key like a secret's value, its
// associated data bound to the certificate (a key cannot be paired with
// another certificate). The first replica creates it; the others read it.
// The vault treats both as opaque PEM texts: package certs makes and
// checks them. A single-node egressd keeps its CA in the data dir instead
// and never writes this key.

// metaSharedCA is the key in bMeta of the shared CA (storedCA).
var metaSharedCA = []byte("shared_ca")

// storedCA is the shared CA as stored.
type storedCA struct {
	CertPEM   string    `json:"cert_pem"`
	Key       *sealed   `json:"key"`
	CreatedAt time.Time `json:"created_at"`
}

// sharedCAAD binds the sealed key to its certificate.
func sharedCAAD(certPEM []byte) []byte {
	sum := sha256.Sum256(certPEM)
	return append([]byte("egressd/shared-ca/v1\x00"), sum[:]...)
}

// SharedCA returns the store's shared CA: the certificate and the key in
// PEM, as create made them, with created false when it was in the store
// already. When the store has none, create makes one (outside any
// transaction) and it is stored in one Update that looks again first:
// of replicas starting together one stores its CA and every other gets
// that one (created false), its own discarded. A create error is
// returned and nothing is stored. This is the one read path that returns
// the CA's key; it never appears in an error, a log line or a listing.
func (s *Store) SharedCA(create func() (certPEM, keyPEM []byte, err error)) (certPEM, keyPEM []byte, created bool, err error) {
	var found bool
	err = s.view(func(tx storage.Tx) error {
		var oerr error
		certPEM, keyPEM, found, oerr = readSharedCA(tx.Bucket(bMeta), s.keys)
		return oerr
	})
	if err != nil || found {
		return certPEM, keyPEM, false, err
	}
	if create == nil {
		return nil, nil, false, fmt.Errorf("vault: shared CA: %w", ErrNotFound)
	}
	newCert, newKey, err := create()
	if err != nil {
		return nil, nil, false, fmt.Errorf("vault: create the shared CA: %w", err)
	}
	if len(newCert) == 0 || len(newKey) == 0 {
		return nil, nil, false, errors.New("vault: create the shared CA: empty certificate or key")
	}
	err = s.backend.Update(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		var rerr error
		certPEM, keyPEM, found, rerr = readSharedCA(meta, s.keys)
		if rerr != nil || found {
			return rerr
		}
		k, rerr := s.sealKey(tx)
		if rerr != nil {
			return rerr
		}
		certPEM, keyPEM, created = newCert, newKey, true
		return putSharedCA(meta, k, newCert, newKey, s.stamp())
	})
	if err != nil {
		return nil, nil, false, err
	}
	return certPEM, keyPEM, created, nil
}

// readSharedCA opens the shared CA in meta; found is false when there is
// none.
func readSharedCA(meta storage.Bucket, key opener) (certPEM, keyPEM []byte, found bool, err error) {
	var st storedCA
	ok, err := getJSON(meta, metaSharedCA, &st)
	if err != nil || !ok {
		return nil, nil, false, err
	}
	if st.Key == nil || st.CertPEM == "" {
		return nil, nil, false, errors.New("vault: corrupt shared CA record")
	}
	keyPEM, err = key.open(st.Key, sharedCAAD([]byte(st.CertPEM)))
	if err != nil {
		return nil, nil, false, fmt.Errorf("vault: shared CA key: %w", err)
	}
	return []byte(st.CertPEM), keyPEM, true, nil
}

// putSharedCA seals keyPEM and stores the pair in meta.
func putSharedCA(meta storage.Bucket, key *MasterKey, certPEM, keyPEM []byte, now time.Time) error {
	sk, err := key.seal(keyPEM, sharedCAAD(certPEM))
	if err != nil {
		return err
	}
	return putJSON(meta, metaSharedCA, storedCA{CertPEM: string(certPEM), Key: sk, CreatedAt: now})
}

// rekeySharedCA re-wraps the shared CA's data key, if the store has one,
// from oldKey to newKey (rekeyTx).
func rekeySharedCA(meta storage.Bucket, oldKey, newKey *MasterKey) error {
	raw := meta.Get(metaSharedCA)
	if raw == nil {
		return nil
	}
	var st storedCA
	if err := json.Unmarshal(raw, &st); err != nil || st.Key == nil {
		return errors.New("vault: corrupt shared CA record")
	}
	nk, err := oldKey.rewrap(st.Key, sharedCAAD([]byte(st.CertPEM)), newKey)
	if err != nil {
		return fmt.Errorf("shared CA: %w", err)
	}
	st.Key = nk
	return putJSON(meta, metaSharedCA, st)
}
