package vault

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// A vault on a Backend it was given keeps its audit journal at
// JournalPath, needs no Path, and closes the Backend with the Store; the
// same backend and journal opened again hold what was written.
func TestOpenOnBackend(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "spool", "audit-journal")
	key := NewMasterKey()
	open := func() *Store {
		cfg := Config{Path: filepath.Join(dir, "data.db"), MasterKey: key, NoSync: true}
		b := newTestBackend(t, cfg)
		s, err := Open(Config{Backend: b, JournalPath: journal, MasterKey: key, NoSync: true})
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		return s
	}
	s := open()
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "a", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	if err := s.AppendAudit(audit.Row{Kind: audit.KindRequest, TenantID: tn.ID, Host: "api.example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("no journal at JournalPath: %v", err)
	}
	if s.Path() != "" {
		t.Errorf("Path %q, want Config.Path (empty)", s.Path())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close closed the backend: the file can be opened again.
	s = open()
	defer s.Close()
	if v := mustOpenValue(t, s, tn.ID, sec.ID); v != "v" {
		t.Fatalf("value %q", v)
	}
	rows, _, err := s.QueryAudit(tn.ID, audit.Filter{Kind: audit.KindRequest})
	if err != nil || len(rows) != 1 {
		t.Fatalf("%d request rows (%v), want 1", len(rows), err)
	}
}

// With a Backend, the journal needs a place: Path or JournalPath. A
// failed Open leaves the Backend open, the caller's.
func TestOpenOnBackendRefusals(t *testing.T) {
	dir := t.TempDir()
	b := &closeCounter{Backend: newTestBackend(t, Config{Path: filepath.Join(dir, "data.db"), NoSync: true})}
	defer b.Backend.Close()
	if _, err := Open(Config{Backend: b, MasterKey: NewMasterKey()}); err == nil {
		t.Fatal("opened a Backend without a journal path")
	}
	key := NewMasterKey()
	s, err := Open(Config{Backend: b, JournalPath: filepath.Join(dir, "j"), MasterKey: key, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.log.Close() // the journal only: the backend stays open
	if _, err := Open(Config{Backend: b, JournalPath: filepath.Join(dir, "j"), MasterKey: NewMasterKey(), NoSync: true}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("open with another key: %v, want ErrWrongMasterKey", err)
	}
	if b.closes != 0 {
		t.Fatalf("failed opens closed the caller's backend %d times", b.closes)
	}
	if err := b.View(func(tx storage.Tx) error { return nil }); err != nil {
		t.Fatalf("the backend after failed opens: %v", err)
	}
}

type closeCounter struct {
	storage.Backend
	closes int
}

func (c *closeCounter) Close() error {
	c.closes++
	return nil
}

// A node id that is not 1 to 64 bytes of [A-Za-z0-9_-] is refused at Open.
func TestNodeIDChecked(t *testing.T) {
	for _, id := range []string{"a/b", "a\x00b", "é", strings.Repeat("a", 65), "a b"} {
		path, key := filepath.Join(t.TempDir(), "vault.db"), NewMasterKey()
		_, err := Open(Config{Path: path, NodeID: id, MasterKey: key, NoSync: true})
		if err == nil || !strings.Contains(err.Error(), "node id") {
			t.Errorf("node id %q: %v, want refused", id, err)
		}
	}
}
