package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault"
)

// Check reports, without creating or changing anything, whether Open could
// use the directory: it is a directory egressd may write in, or it does not
// exist and the nearest directory above it that does is one egressd may
// write in (Create makes it there). The error names --data-dir.
func (d Dir) Check() error {
	if err := checkCreatable(string(d)); err != nil {
		return &config.FlagError{Flag: "--data-dir", Value: string(d), Err: err}
	}
	return nil
}

// Check reports, without creating anything, whether Open(dir, k) would find
// a usable master key: the key in the environment parses; an existing file
// is readable and holds a key; a missing file is fine only when the vault
// does not exist yet and the file can be created. It cannot tell whether
// the key opens an existing vault: Open says that.
func (k KeySource) Check(dir Dir) error {
	if k.FromEnv() {
		_, _, err := k.Load(false)
		return err
	}
	_, err := vault.LoadMasterKeyFile(k.File)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, vault.ErrBadMasterKey):
		if ks, rerr := vault.LoadMasterKeysFile(k.File); rerr == nil && len(ks) > 1 {
			return &config.FlagError{Flag: "--master-key-file", Value: k.File,
				Err: errors.New("holds two keys: a key ring is for a shared store (--store) only; on one node, rekey with egressd vault rekey, the server stopped")}
		}
		return &config.FlagError{Flag: "--master-key-file", Value: k.File,
			Err: errors.New("not a master key (want 32 bytes in base64 or hex)")}
	case !errors.Is(err, fs.ErrNotExist):
		return &config.FlagError{Flag: "--master-key-file", Value: k.File, Err: err}
	}
	had, err := dir.HasVault()
	if err != nil {
		return &config.FlagError{Flag: "--data-dir", Value: string(dir), Err: err}
	}
	if had {
		return fmt.Errorf("%w: %s does not exist; restore it, pass --master-key-file, or set %s",
			ErrNoMasterKey, k.File, config.MasterKeyEnv)
	}
	if err := checkCreatable(k.File); err != nil {
		return &config.FlagError{Flag: "--master-key-file", Value: k.File, Err: err}
	}
	return nil
}

// checkCreatable reports whether path is a directory egressd may write in,
// or does not exist and could be created with os.MkdirAll: the nearest
// existing path above it is such a directory.
func checkCreatable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for p := abs; ; {
		fi, err := os.Stat(p)
		var problem string
		switch {
		case err == nil && !fi.IsDir():
			problem = "not a directory"
		case err == nil:
			werr := writable(p)
			if werr == nil {
				return nil
			}
			problem = "not writable (" + config.Problem(werr) + ")"
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			// ENOTDIR: a file above it; the walk up names that file.
			problem = config.Problem(err)
		}
		if problem != "" {
			if p == abs {
				return errors.New(problem)
			}
			return fmt.Errorf("cannot be created: %s: %s", p, problem)
		}
		up := filepath.Dir(p)
		if up == p {
			return errors.New("cannot be created: no directory above it exists")
		}
		p = up
	}
}
