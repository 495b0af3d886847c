// Package vaulttest writes vault files as older versions of egressd left
// them, past the vault's validation, for tests of how today's code treats
// such rows. Nothing outside tests imports it.
package vaulttest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// StripAllowedHosts rewrites the rows of the secrets ids in the closed
// vault file at path without allowed_hosts, as versions that took none as
// "any host" stored them. Only that field is touched: the sealed values
// stay bound to their row.
func StripAllowedHosts(tb testing.TB, path string, ids ...string) {
	tb.Helper()
	db, err := boltstore.Open(path, boltstore.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.Update(func(tx storage.Tx) error {
		b := tx.Bucket([]byte("secrets"))
		type edit struct{ k, v []byte }
		var edits []edit
		if err := b.ForEach(func(k, v []byte) error {
			var row map[string]json.RawMessage
			if err := json.Unmarshal(v, &row); err != nil {
				return err
			}
			var id string
			if err := json.Unmarshal(row["id"], &id); err != nil || !slices.Contains(ids, id) {
				return err
			}
			delete(row, "allowed_hosts")
			raw, err := json.Marshal(row)
			edits = append(edits, edit{slices.Clone(k), raw})
			return err
		}); err != nil {
			return err
		}
		for _, e := range edits {
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil || n != len(ids) {
		tb.Fatalf("rewrote %d of %d secret rows: %v", n, len(ids), err)
	}
}
