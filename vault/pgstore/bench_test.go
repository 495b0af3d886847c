package pgstore

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// BenchmarkBackends compares pgstore with boltstore (both with their
// defaults, fsync on): 1000 Gets, 1000 Puts and a cursor walk of 1000
// keys, each in one transaction (one op is one transaction).
//
//	EGRESSD_TEST_POSTGRES=... go test -run '^$' -bench Backends ./vault/pgstore/
func BenchmarkBackends(b *testing.B) {
	const n = 1000
	backends := []struct {
		name string
		open func(b *testing.B) storage.Backend
	}{
		{"bolt", func(b *testing.B) storage.Backend {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(b *testing.B) storage.Backend { return openTest(b, Options{}) }},
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "tenant\x00secret%04d", i) }
	value := bytes.Repeat([]byte{0xab}, 200) // about a sealed secret's size
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			if err := s.EnsureBuckets(tb); err != nil {
				b.Fatal(err)
			}
			put := func(tx storage.Tx) error {
				for i := range n {
					if err := tx.Bucket(tb).Put(key(i), value); err != nil {
						return err
					}
				}
				return nil
			}
			if err := s.Update(put); err != nil {
				b.Fatal(err)
			}
			b.Run("Get1000", func(b *testing.B) {
				for b.Loop() {
					if err := s.View(func(tx storage.Tx) error {
						for i := range n {
							if tx.Bucket(tb).Get(key(i)) == nil {
								return fmt.Errorf("key %d missing", i)
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Put1000", func(b *testing.B) {
				for b.Loop() {
					if err := s.Update(put); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Walk1000", func(b *testing.B) {
				for b.Loop() {
					if err := s.View(func(tx storage.Tx) error {
						seen := 0
						c := tx.Bucket(tb).Cursor()
						for k, _ := c.First(); k != nil; k, _ = c.Next() {
							seen++
						}
						if seen != n {
							return fmt.Errorf("walked %d keys", seen)
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("GetOne", func(b *testing.B) {
				for b.Loop() {
					if err := s.View(func(tx storage.Tx) error {
						if tx.Bucket(tb).Get(key(500)) == nil {
							return fmt.Errorf("key missing")
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("PutOne", func(b *testing.B) {
				for b.Loop() {
					if err := s.Update(func(tx storage.Tx) error { return tx.Bucket(tb).Put(key(500), value) }); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
