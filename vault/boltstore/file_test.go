package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/egressd/egressd/vault/storage"
)

// openTemp opens a fresh file in tb.TempDir() and closes it at the end.
func openTemp(tb testing.TB, opts Options) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), "b.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// A second Open of a file that is open waits Timeout and fails with
// storage.ErrLocked; once the first is closed it opens.
func TestOpenLocked(t *testing.T) {
	s := openTemp(t, Options{NoSync: true, FreelistMap: true})
	start := time.Now()
	_, err := Open(s.Path(), Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second open: %v, want storage.ErrLocked", err)
	}
	// bbolt gives up one retry interval (50ms) before the timeout.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Path(), Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

// The seam's errors and nils come out of bbolt's: a missing bucket is a
// nil interface, Put in a View, an empty key and oversized keys or values
// are refused with the seam's sentinels, and a closed store says so.
func TestSeamErrors(t *testing.T) {
	s := openTemp(t, Options{NoSync: true})
	if err := s.EnsureBuckets([]byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if err := s.EnsureBuckets([]byte("a")); err != nil {
		t.Fatalf("again: %v", err)
	}
	after := s.Stats()
	if d := after.Sub(&before); d.TxStats.GetWrite() != 0 {
		t.Error("EnsureBuckets of buckets that exist wrote to the file")
	}
	err := s.View(func(tx storage.Tx) error {
		if tx.Bucket([]byte("missing")) != nil {
			t.Error("a missing bucket is not nil")
		}
		if tx.Writable() {
			t.Error("a View is writable")
		}
		if err := tx.Bucket([]byte("a")).Put([]byte("k"), []byte("v")); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("Put in a View: %v", err)
		}
		if err := tx.Bucket([]byte("a")).Delete([]byte("k")); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("Delete in a View: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx storage.Tx) error {
		b := tx.Bucket([]byte("a"))
		if err := b.Put(nil, []byte("v")); !errors.Is(err, storage.ErrKeyRequired) {
			t.Errorf("empty key: %v", err)
		}
		if err := b.Put(make([]byte, storage.MaxKeySize+1), nil); !errors.Is(err, storage.ErrTooLarge) {
			t.Errorf("long key: %v", err)
		}
		if err := b.Put([]byte("k"), make([]byte, storage.MaxValueSize+1)); !errors.Is(err, storage.ErrTooLarge) {
			t.Errorf("long value: %v", err)
		}
		if err := b.Put([]byte("empty"), nil); err != nil {
			t.Error(err)
		}
		if v := b.Get([]byte("empty")); v == nil || len(v) != 0 {
			t.Errorf("a key put with nil reads %q in its transaction, want an empty non-nil value", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx storage.Tx) error {
		if v := tx.Bucket([]byte("a")).Get([]byte("empty")); v == nil || len(v) != 0 {
			t.Errorf("a key put with nil reads %q, want an empty non-nil value", v)
		}
		return nil
	})
	s.Close()
	if err := s.View(func(storage.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("View after Close: %v", err)
	}
}

// FillHint is bbolt's FillPercent: sequential keys with a hint of 0.9
// fill fewer pages than with bbolt's default of half.
func TestFillHint(t *testing.T) {
	pages := func(hint float64) int {
		s := openTemp(t, Options{NoSync: true})
		if err := s.EnsureBuckets([]byte("a")); err != nil {
			t.Fatal(err)
		}
		err := s.Update(func(tx storage.Tx) error {
			b := tx.Bucket([]byte("a"))
			if hint > 0 {
				b.FillHint(hint)
			}
			for i := range 20000 {
				if err := b.Put(fmt.Appendf(nil, "k%08d", i), bytes.Repeat([]byte("v"), 40)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		s.DB().View(func(tx *bolt.Tx) error {
			n = tx.Bucket([]byte("a")).Stats().LeafPageN
			return nil
		})
		return n
	}
	def, full := pages(0), pages(0.9)
	if full >= def {
		t.Fatalf("leaf pages with FillHint(0.9) %d, without %d", full, def)
	}
}

// The wrappers allocate nothing of their own: a View, a Bucket and a Get
// through the seam allocate what bbolt's own calls do (a read-only
// transaction's Bucket builds bbolt's Bucket each time). A cursor costs
// one allocation more: bbolt's, inlined, stays on the caller's stack,
// and through the interface it escapes to the heap.
func TestSeamAllocatesNothing(t *testing.T) {
	s := openTemp(t, Options{NoSync: true})
	if err := s.EnsureBuckets([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx storage.Tx) error { return tx.Bucket([]byte("a")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	name, k := []byte("a"), []byte("k")
	var raw, seam, rawCursor, seamCursor float64
	s.DB().View(func(tx *bolt.Tx) error {
		raw = testing.AllocsPerRun(100, func() {
			if tx.Bucket(name).Get(k) == nil {
				t.Fatal("no value")
			}
		})
		b := tx.Bucket(name)
		rawCursor = testing.AllocsPerRun(100, func() { b.Cursor().First() })
		return nil
	})
	s.View(func(tx storage.Tx) error {
		seam = testing.AllocsPerRun(100, func() {
			if tx.Bucket(name).Get(k) == nil {
				t.Fatal("no value")
			}
		})
		b := tx.Bucket(name)
		seamCursor = testing.AllocsPerRun(100, func() { b.Cursor().First() })
		return nil
	})
	if seam != raw {
		t.Errorf("Bucket and Get: %v allocations through the seam, %v in bbolt", seam, raw)
	}
	if seamCursor > rawCursor+1 {
		t.Errorf("a cursor: %v allocations through the seam, %v in bbolt", seamCursor, rawCursor)
	}
	fn := func(storage.Tx) error { return nil }
	rawFn := func(*bolt.Tx) error { return nil }
	if v, r := testing.AllocsPerRun(100, func() { s.View(fn) }), testing.AllocsPerRun(100, func() { s.DB().View(rawFn) }); v != r {
		t.Errorf("View: %v allocations through the seam, %v in bbolt", v, r)
	}
}
