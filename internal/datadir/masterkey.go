package datadir

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/vault"
)

// KeySource says where the master key comes from: a file, or its text in
// the environment (EGRESSD_MASTER_KEY). It never holds a key read from a
// file, and prints without the key.
type KeySource struct {
	// File is the master key file; ignored when the text is set.
	File string
	text string
}

// NewKeySource picks the master key: envText (the value of
// EGRESSD_MASTER_KEY) when set, else file, else the data dir's master.key.
// fileExplicit says the file came from a flag or its variable; together
// with envText it is refused as ambiguous.
func NewKeySource(dir Dir, file string, fileExplicit bool, envText string) (KeySource, error) {
	if envText != "" {
		if fileExplicit {
			return KeySource{}, fmt.Errorf("%w: both --master-key-file (or %s) and %s are set; unset one of them",
				ErrKeyConflict, config.EnvName("master-key-file"), config.MasterKeyEnv)
		}
		return KeySource{text: envText}, nil
	}
	if file == "" {
		file = dir.MasterKey()
	}
	return KeySource{File: file}, nil
}

// FromEnv reports whether the key comes from the environment.
func (k KeySource) FromEnv() bool { return k.text != "" }

// String names the source, never the key.
func (k KeySource) String() string {
	if k.FromEnv() {
		return "$" + config.MasterKeyEnv
	}
	return k.File
}

// GoString names the source, never the key.
func (k KeySource) GoString() string { return "KeySource(" + k.String() + ")" }

// Load returns the master key. When create is true and the source is a file
// that does not exist, a new key is written there (0600) and created is
// true. When create is false, a missing file is ErrNoMasterKey.
func (k KeySource) Load(create bool) (key *vault.MasterKey, created bool, err error) {
	if k.FromEnv() {
		key, err := vault.ParseMasterKey([]byte(k.text))
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", config.MasterKeyEnv, err)
		}
		return key, false, nil
	}
	if create {
		return vault.LoadOrCreateMasterKeyFile(k.File)
	}
	key, err = vault.LoadMasterKeyFile(k.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: %s does not exist; restore it, pass --master-key-file, or set %s",
			ErrNoMasterKey, k.File, config.MasterKeyEnv)
	}
	return key, false, err
}
