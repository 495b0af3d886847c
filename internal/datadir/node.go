package datadir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NodeIDFile holds the data dir's node id.
const NodeIDFile = "node.id"

// NodeID returns the data dir's node id, creating it (random, 0600) the
// first time. It names this node's audit journal in the vault
// (vault.Config.NodeID): replicas that share a store each keep how far
// their own journal is indexed under their own id. It stays with the data
// dir, as the journal does; copying a data dir to start another replica
// copies its id too: give each replica its own data dir (delete node.id
// in a copy).
func (d Dir) NodeID() (string, error) {
	path := d.Path(NodeIDFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			id := strings.TrimSpace(string(b))
			if !validNodeID(id) {
				return "", fmt.Errorf("%s: not a node id (want 1 to 64 of [A-Za-z0-9_-]); delete it to get a new one", path)
			}
			return id, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("node id: %w", err)
		}
		var raw [16]byte
		rand.Read(raw[:])
		id := hex.EncodeToString(raw[:])
		// Written whole under a temporary name, then linked into place: a
		// process reading at the same time sees no file or the whole id,
		// and of two processes making one the first link wins.
		switch err := publishFile(path, []byte(id+"\n")); {
		case err == nil:
			return id, nil
		case errors.Is(err, fs.ErrExist):
			continue // another process made it a moment ago: read theirs
		default:
			return "", fmt.Errorf("node id: %w", err)
		}
	}
	return "", fmt.Errorf("node id: %s keeps appearing and vanishing", path)
}

// publishFile writes data (0600) to a temporary file beside path, syncs
// it and links it to path, failing with fs.ErrExist if path exists.
func publishFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err = f.Chmod(0o600); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(tmp, path)
}

func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
