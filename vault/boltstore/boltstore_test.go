package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
	"github.com/egressd/egressd/vault/storage/storagetest"
)

// boltstore passes the seam's conformance suite, with the options the
// vault opens its file with (the hashmap freelist; no fsync here).
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "store.db"), boltstore.Options{Timeout: time.Second, NoSync: true, FreelistMap: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
