package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
	bolt "go.etcd.io/bbolt"
)

// TestVaultReindex: a secret whose list index entries are gone (as when an
// older egressd wrote it) is missing from a filtered list until egressd
// vault reindex builds the indexes again; the reindex refuses to run while
// serve holds the data dir.
func TestVaultReindex(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	keys := mustInit(t, nil, "--data-dir", dir, "--tenant", "acme")
	apiKey := str(keys, "api_key")

	s := serve(t, dir, nil)
	code, body := s.call(t, "POST", "/api/v1/egress/secrets", apiKey, map[string]any{
		"name": "GITHUB_TOKEN", "value": "ghp-reindex-test-value", "scope": "external_user",
		"external_user_id": "u7", "allowed_hosts": []string{"api.github.com"},
	})
	if code != http.StatusCreated {
		t.Fatalf("create secret: %d %s", code, body)
	}
	if r := egressd(t, nil, "vault", "reindex", "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "stop it first") {
		t.Fatalf("reindex while serving: exit %d, stderr %q", r.code, r.stderr)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}

	// What an older egressd leaves: the row without its index entries.
	db, err := bolt.Open(filepath.Join(dir, "egressd.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropped := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("secret_fields"))
		if b == nil {
			t.Fatal("no secret_fields bucket: the list index layout changed; update this test")
		}
		var ks [][]byte
		if err := b.ForEach(func(k, _ []byte) error { ks = append(ks, append([]byte(nil), k...)); return nil }); err != nil {
			return err
		}
		for _, k := range ks {
			if err := b.Delete(k); err != nil {
				return err
			}
			dropped++
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil || dropped == 0 {
		t.Fatalf("dropping the index entries: %v (%d dropped)", err, dropped)
	}
	listed := func() int {
		t.Helper()
		s := serve(t, dir, nil)
		defer s.stop(t)
		code, body := s.call(t, "GET", "/api/v1/egress/secrets?external_user_id=u7", apiKey, nil)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, body)
		}
		var page struct {
			Secrets []json.RawMessage `json:"secrets"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Secrets)
	}
	if n := listed(); n != 0 {
		t.Fatalf("the filtered list found %d secrets without their index entries: the test does not take them away", n)
	}

	r := egressd(t, nil, "vault", "reindex", "--data-dir", dir)
	if r.code != 0 {
		t.Fatalf("reindex: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ Secrets, Bindings, Sandboxes int }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Secrets != 1 {
		t.Fatalf("reindex output %q: %v", r.stdout, err)
	}
	if n := listed(); n != 1 {
		t.Fatalf("after reindex the filtered list holds %d secrets, want 1", n)
	}
}

// TestStoreReindex: vault reindex --store on a store init made, and a
// mistyped schema refused without being created.
func TestStoreReindex(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	key := writeKeys(t, vault.NewMasterKey())
	store := []string{"--store", dsn, "--store-schema", schema, "--master-key-file", key}
	if r := egressd(t, nil, append([]string{"vault", "reindex"}, store...)...); r.code != 1 || !strings.Contains(r.stderr, "holds no egressd store") {
		t.Fatalf("reindex of a missing schema: %d %q", r.code, r.stderr)
	}
	if r := egressd(t, nil, append([]string{"init"}, store...)...); r.code != 0 {
		t.Fatalf("init --store: %d %s", r.code, r.stderr)
	}
	r := egressd(t, nil, append([]string{"vault", "reindex"}, store...)...)
	noPassword(t, dsn, r.stdout, r.stderr)
	var out struct{ Secrets, Bindings, Sandboxes *int }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Secrets == nil || out.Sandboxes == nil {
		t.Fatalf("reindex --store: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
