package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/storage"
)

// RekeyOutcome is what Rekey did.
type RekeyOutcome struct {
	vault.RekeyResult
	// NewKeyCreated says the new master key file was created by Rekey.
	NewKeyCreated bool `json:"-"`
	// ReplacedFile is the old master key file, now holding the new key;
	// empty when the old key came from the environment.
	ReplacedFile string `json:"-"`
}

// Rekey re-wraps every data key of the vault in dir from the key of old to
// the key in newFile, creating newFile (0600) with a fresh key if it does
// not exist. On success the old master key file, if the old key came from
// one, is atomically replaced by the new key, so the next serve picks it
// up; newFile stays. A vault in use is ErrInUse (after at most timeout;
// zero means 1s) and then nothing changes, and a newFile created here is
// removed again.
func Rekey(dir Dir, old KeySource, newFile string, timeout time.Duration) (RekeyOutcome, error) {
	var out RekeyOutcome
	if newFile == "" {
		return out, errors.New("--new-master-key-file is required")
	}
	had, err := dir.HasVault()
	if err != nil {
		return out, fmt.Errorf("check vault: %w", err)
	}
	if !had {
		return out, fmt.Errorf("%w: %s does not exist (run egressd init first)", ErrNoVault, dir.DB())
	}
	if !old.FromEnv() && sameFile(old.File, newFile) {
		return out, fmt.Errorf("--new-master-key-file %s is the current master key file; name a new file", newFile)
	}
	oldKey, _, err := old.Load(false)
	if err != nil {
		return out, err
	}
	newKey, created, err := KeySource{File: newFile}.Load(true)
	if err != nil {
		return out, fmt.Errorf("new master key: %w", err)
	}
	out.NewKeyCreated = created
	res, err := vault.Rekey(dir.DB(), oldKey, newKey, timeout)
	if err != nil {
		if created {
			_ = os.Remove(newFile) // ours, and the vault did not change
			out.NewKeyCreated = false
		}
		switch {
		case errors.Is(err, vault.ErrLocked):
			return out, fmt.Errorf("%w; stop the server first, then run egressd vault rekey again (%s is locked)", ErrInUse, dir.DB())
		case errors.Is(err, vault.ErrWrongMasterKey):
			return out, wrongKey(dir, oldKey, old, err)
		}
		return out, err
	}
	out.RekeyResult = res
	if old.FromEnv() {
		return out, nil
	}
	data, err := os.ReadFile(newFile)
	if err == nil {
		err = checkSameKey(data, newKey, newFile)
	}
	if err == nil {
		err = WriteFileAtomic(old.File, data, 0o600)
	}
	clear(data)
	if err != nil {
		return out, fmt.Errorf("the vault is now sealed by the key in %s, but %s could not be replaced with it: %w; copy %s over %s before starting egressd",
			newFile, old.File, err, newFile, old.File)
	}
	out.ReplacedFile = old.File
	return out, nil
}

// sameFile reports whether a and b name the same file, or the same path
// when either does not exist.
func sameFile(a, b string) bool {
	ia, erra := os.Stat(a)
	ib, errb := os.Stat(b)
	if erra == nil && errb == nil {
		return os.SameFile(ia, ib)
	}
	aa, _ := filepath.Abs(a)
	bb, _ := filepath.Abs(b)
	return aa == bb
}

// checkSameKey makes sure the file still holds the key the vault was just
// rekeyed to, before it is copied over the old key file.
func checkSameKey(data []byte, want *vault.MasterKey, path string) error {
	k, err := vault.ParseMasterKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !k.Equal(want) {
		return fmt.Errorf("%s changed during the rekey", path)
	}
	return nil
}

// RekeyStore re-wraps every data key of the vault in backend, a store that
// serving replicas share, online (vault.RekeyStore): from the key old's
// source holds that the vault is sealed by (old may hold the replicas' two
// keys) to the key in newFile, which must exist (a shared store's key is
// never created: every replica must hold it before the rekey). The keys
// are read and checked before open connects to the store (and closes it
// after). Nothing changes on an error, nor when a serving replica lacks
// the new key (unless ignoreReplicas). name names the store (without its
// password).
func RekeyStore(open func() (storage.Backend, error), name string, old KeySource, newFile string, ignoreReplicas bool) (vault.RekeyResult, error) {
	if newFile == "" {
		return vault.RekeyResult{}, errors.New("--new-master-key-file is required")
	}
	held, err := old.LoadRing()
	if err != nil {
		return vault.RekeyResult{}, err
	}
	newKey, err := vault.LoadMasterKeyFile(newFile)
	if errors.Is(err, fs.ErrNotExist) {
		return vault.RekeyResult{}, fmt.Errorf("%w: %s does not exist; with --store the new key must exist and be held by every replica before the rekey (docs/operating.md, Cluster mode)", ErrNoMasterKey, newFile)
	}
	if ks, rerr := vault.LoadMasterKeysFile(newFile); err != nil && rerr == nil && len(ks) > 1 {
		return vault.RekeyResult{}, fmt.Errorf("new master key: %s holds %d keys: --new-master-key-file must hold the new key alone (the replicas' two-key file goes to --master-key-file)", newFile, len(ks))
	}
	if err != nil {
		return vault.RekeyResult{}, fmt.Errorf("new master key: %w", err)
	}
	backend, err := open()
	if err != nil {
		return vault.RekeyResult{}, err
	}
	defer backend.Close()
	res, err := vault.RekeyStore(backend, name, held, newKey, ignoreReplicas)
	switch {
	case errors.Is(err, vault.ErrAlreadyRekeyed):
		return res, fmt.Errorf("%w: nothing to do (a rekey to this key ran before)", err)
	case errors.Is(err, vault.ErrWrongMasterKey):
		return res, fmt.Errorf("%w: the key from %s (id %s) cannot open the vault in %s (%v)", ErrWrongMasterKey, old, strings.Join(ids(held), " and "), name, err)
	case errors.Is(err, vault.ErrReplicaLacksKey):
		return res, fmt.Errorf("%w; nothing changed: give those replicas the old and new keys (a rolling restart) and rekey again, or, for a replica that is gone, wait %s after it stopped or pass --ignore-replicas", err, vault.ReplicaTTL)
	}
	return res, err
}
