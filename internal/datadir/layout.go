package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/egressd/egressd/certs"
)

// Names of the files in a data directory.
const (
	DBFile          = "egressd.db"
	MasterKeyFile   = "master.key"
	AdminAddrFile   = "admin.addr"
	MetricsAddrFile = "metrics.addr"
	ProxyAddrFile   = "proxy.addr"
	PublicAddrFile  = "public.addr"
	// TransparentAddrFile holds the transparent listener's address
	// (--transparent-listen).
	TransparentAddrFile = "transparent.addr"
)

// Dir is a data directory.
type Dir string

// Path joins name to the directory.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// DB is the vault file.
func (d Dir) DB() string { return d.Path(DBFile) }

// MasterKey is the default master key file.
func (d Dir) MasterKey() string { return d.Path(MasterKeyFile) }

// CACert is the CA certificate that sandboxes trust.
func (d Dir) CACert() string { return d.Path(certs.CACertFile) }

// Create makes the directory (0700) if it does not exist.
func (d Dir) Create() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	return nil
}

// HasVault reports whether the vault file exists.
func (d Dir) HasVault() (bool, error) { return exists(d.DB()) }

// exists reports whether path exists; an error other than "does not exist"
// is returned rather than taken for absence.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// WriteFileAtomic replaces path with data (mode perm) so that a reader sees
// either the old or the new content, never a part: a temporary file in the
// same directory is written, synced and renamed over path.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
