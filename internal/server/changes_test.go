package server

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// feedBackend is a backend with a change feed whose health the test sets.
type feedBackend struct {
	storage.Backend
	healthy atomic.Bool
}

func (f *feedBackend) Publish(storage.Tx, string) error { return nil }
func (f *feedBackend) Subscribe(func(string))           {}
func (f *feedBackend) Healthy() bool                    { return f.healthy.Load() }

func TestChangesReady(t *testing.T) {
	dir := t.TempDir()
	plain, err := vault.Open(vault.Config{Path: filepath.Join(dir, "plain.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := changesReady(plain); err != nil {
		t.Fatalf("bbolt store: %v", err)
	}
	bs, err := boltstore.Open(filepath.Join(dir, "feed.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fb := &feedBackend{Backend: bs}
	shared, err := vault.Open(vault.Config{Backend: fb, JournalPath: filepath.Join(dir, "journal"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if err := changesReady(shared); !errors.Is(err, errChangesMissed) {
		t.Fatalf("feed down: %v", err)
	}
	fb.healthy.Store(true)
	if err := changesReady(shared); err != nil {
		t.Fatalf("feed up: %v", err)
	}
}
