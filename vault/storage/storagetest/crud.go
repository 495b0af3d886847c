package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

func testCRUD(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("k1"), []byte("v1"), []byte("k2"), []byte("v2"))
	wantPairs(t, "after two puts", contents(t, s, bA), []pair{kv("k1", "v1"), kv("k2", "v2")})

	// Overwrite, delete, delete of an absent key.
	update(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, bA)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("k1"), []byte("v1'")); err != nil {
			return err
		}
		if err := b.Delete([]byte("k2")); err != nil {
			return err
		}
		if err := b.Delete([]byte("never")); err != nil {
			return fmt.Errorf("Delete of an absent key: %w", err)
		}
		return nil
	})
	view(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, bA)
		if err != nil {
			return err
		}
		if got := b.Get([]byte("k1")); string(got) != "v1'" {
			t.Errorf("Get(k1) = %s, want v1'", fmtKey(got))
		}
		if got := b.Get([]byte("k2")); got != nil {
			t.Errorf("Get(k2) after Delete = %s, want nil", fmtKey(got))
		}
		if got := b.Get([]byte("k")); got != nil {
			t.Errorf("Get(k), a prefix of present keys, = %s, want nil", fmtKey(got))
		}
		if got := b.Get([]byte("k1\x00")); got != nil {
			t.Errorf("Get(k1\\x00) = %s, want nil", fmtKey(got))
		}
		return nil
	})
	wantPairs(t, "after overwrite and delete", contents(t, s, bA), []pair{kv("k1", "v1'")})
	// The other bucket saw none of it.
	wantPairs(t, "other bucket", contents(t, s, bB), nil)
}

func testAbsentVersusEmpty(t *testing.T, s storage.Backend) {
	ensure(t, s)
	check := func(b storage.Bucket, when string) {
		if got := b.Get([]byte("empty")); got == nil || len(got) != 0 {
			t.Errorf("%s: Get of a key put with []byte{} = %#v, want non-nil empty", when, got)
		}
		if got := b.Get([]byte("nil")); got == nil || len(got) != 0 {
			t.Errorf("%s: Get of a key put with nil = %#v, want non-nil empty", when, got)
		}
		if got := b.Get([]byte("absent")); got != nil {
			t.Errorf("%s: Get of an absent key = %#v, want nil", when, got)
		}
		c := b.Cursor()
		k, v := c.Seek([]byte("empty"))
		if string(k) != "empty" || len(v) != 0 {
			t.Errorf("%s: Seek(empty) = %s, %s, want empty, an empty value", when, fmtKey(k), fmtKey(v))
		}
		if k, v = c.Next(); string(k) != "nil" || len(v) != 0 {
			t.Errorf("%s: Next = %s, %s, want nil, an empty value", when, fmtKey(k), fmtKey(v))
		}
	}
	update(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, bA)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("empty"), []byte{}); err != nil {
			return err
		}
		if err := b.Put([]byte("nil"), nil); err != nil {
			return err
		}
		check(b, "in the writing transaction")
		return nil
	})
	view(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, bA)
		if err != nil {
			return err
		}
		check(b, "after commit")
		return nil
	})
}

func testBuckets(t *testing.T, s storage.Backend) {
	view(t, s, func(tx storage.Tx) error {
		if b := tx.Bucket(bA); b != nil {
			t.Errorf("Bucket(%s) of a new store is not nil", bA)
		}
		return nil
	})
	ensure(t, s, bA, bB)
	for _, fn := range []func(func(storage.Tx) error) error{s.View, s.Update} {
		if err := fn(func(tx storage.Tx) error {
			if tx.Bucket(bA) == nil || tx.Bucket(bB) == nil {
				t.Errorf("a bucket EnsureBuckets made is nil")
			}
			if b := tx.Bucket(bC); b != nil {
				t.Errorf("Bucket(%s), never made, is not nil", bC)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The same key in two buckets is two entries.
	putAll(t, s, bA, []byte("k"), []byte("in alpha"))
	putAll(t, s, bB, []byte("k"), []byte("in beta"))
	update(t, s, func(tx storage.Tx) error {
		return tx.Bucket(bA).Delete([]byte("k"))
	})
	wantPairs(t, "alpha", contents(t, s, bA), nil)
	wantPairs(t, "beta", contents(t, s, bB), []pair{kv("k", "in beta")})
}

func testEnsureBucketsIdempotent(t *testing.T, s storage.Backend) {
	if err := s.EnsureBuckets(); err != nil {
		t.Fatalf("EnsureBuckets() with no names: %v", err)
	}
	ensure(t, s, bA)
	putAll(t, s, bA, []byte("k"), []byte("v"))
	ensure(t, s, bA, bB, bA)
	ensure(t, s, bB, bC)
	wantPairs(t, "alpha after EnsureBuckets again", contents(t, s, bA), []pair{kv("k", "v")})
	view(t, s, func(tx storage.Tx) error {
		for _, n := range [][]byte{bA, bB, bC} {
			if tx.Bucket(n) == nil {
				t.Errorf("Bucket(%s) is nil", n)
			}
		}
		return nil
	})
}

// Replicas that start together each ensure the same buckets.
func testEnsureBucketsConcurrent(t *testing.T, s storage.Backend) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- s.EnsureBuckets(bA, bB, bC) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent EnsureBuckets: %v", err)
		}
	}
	putAll(t, s, bC, []byte("k"), []byte("v"))
	wantPairs(t, "gamma", contents(t, s, bC), []pair{kv("k", "v")})
}

func testLimits(t *testing.T, s storage.Backend) {
	ensure(t, s)
	// Random bytes: a backend that compresses keys must not squeeze them.
	bigKey := make([]byte, storage.MaxKeySize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range bigKey {
		bigKey[i] = byte(rng.Uint32())
	}
	overKey := append(bytes.Clone(bigKey), 1)
	overValue := make([]byte, storage.MaxValueSize+1)
	midValue := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	update(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, bA)
		if err != nil {
			return err
		}
		for _, k := range [][]byte{nil, {}} {
			if err := b.Put(k, []byte("v")); !errors.Is(err, storage.ErrKeyRequired) {
				t.Errorf("Put(%#v key) = %v, want ErrKeyRequired", k, err)
			}
		}
		if err := b.Put(overKey, []byte("v")); !errors.Is(err, storage.ErrTooLarge) {
			t.Errorf("Put of a key of MaxKeySize+1 bytes = %v, want ErrTooLarge", err)
		}
		if err := b.Put([]byte("over"), overValue); !errors.Is(err, storage.ErrTooLarge) {
			t.Errorf("Put of a value of MaxValueSize+1 bytes = %v, want ErrTooLarge", err)
		}
		// The refusals did not end the transaction.
		if err := b.Put(bigKey, []byte("big key")); err != nil {
			return fmt.Errorf("Put of a key of MaxKeySize bytes: %w", err)
		}
		if err := b.Put([]byte("mid"), midValue); err != nil {
			return fmt.Errorf("Put of a 1 MiB value: %w", err)
		}
		return nil
	})
	view(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		if got := b.Get(bigKey); string(got) != "big key" {
			t.Errorf("Get(key of MaxKeySize bytes) = %s", fmtKey(got))
		}
		if got := b.Get([]byte("mid")); !bytes.Equal(got, midValue) {
			t.Errorf("Get(mid) returned %d bytes, not the 1 MiB put", len(got))
		}
		if k, _ := b.Cursor().Last(); !bytes.Equal(k, bigKey) {
			t.Errorf("Last = %s, want the key of MaxKeySize bytes", fmtKey(k))
		}
		if b.Get(overKey) != nil || b.Get([]byte("over")) != nil {
			t.Errorf("a refused Put was stored")
		}
		return nil
	})
	if testing.Short() {
		t.Log("-short: a value of MaxValueSize not tried")
		return
	}
	maxValue := overValue[:storage.MaxValueSize]
	for i := 0; i < len(maxValue); i += 4096 {
		maxValue[i] = byte(i >> 12)
	}
	putAll(t, s, bA, []byte("max"), maxValue)
	view(t, s, func(tx storage.Tx) error {
		if got := tx.Bucket(bA).Get([]byte("max")); !bytes.Equal(got, maxValue) {
			t.Errorf("Get of a value of MaxValueSize returned %d bytes, not the value put", len(got))
		}
		return nil
	})
}

// What the caller copied inside a transaction stays as it was after the
// transaction, after the key is overwritten, and after it is deleted.
func testCopiedSlicesStayValid(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("k1"), []byte("value one"), []byte("k2"), []byte("value two"))
	var gk, gv, ck, cv []byte
	view(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		gk, gv = []byte("k1"), bytes.Clone(b.Get([]byte("k1")))
		k, v := b.Cursor().Last()
		ck, cv = bytes.Clone(k), bytes.Clone(v)
		return nil
	})
	update(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		if err := b.Put([]byte("k1"), []byte("VALUE ONE CHANGED")); err != nil {
			return err
		}
		for i := range 300 { // enough to move pages around in a B+tree
			if err := b.Put(fmt.Appendf(nil, "k1-%03d", i), bytes.Repeat([]byte{'x'}, 100)); err != nil {
				return err
			}
		}
		return b.Delete([]byte("k2"))
	})
	if string(gk) != "k1" || string(gv) != "value one" || string(ck) != "k2" || string(cv) != "value two" {
		t.Errorf("copies changed: Get %q=%q, cursor %q=%q", gk, gv, ck, cv)
	}
}

func testClose(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("k"), []byte("v"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	noop := func(storage.Tx) error { return nil }
	if err := s.View(noop); err == nil {
		t.Errorf("View after Close: no error")
	}
	if err := s.Update(noop); err == nil {
		t.Errorf("Update after Close: no error")
	}
	if err := s.Batch(noop); err == nil {
		t.Errorf("Batch after Close: no error")
	}
	if err := s.EnsureBuckets(bC); err == nil {
		t.Errorf("EnsureBuckets after Close: no error")
	}
}
