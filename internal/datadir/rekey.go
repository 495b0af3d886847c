package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/egressd/egressd/vault"
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
