package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

func testOwnWritesSeen(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("1"), []byte("c"), []byte("3"), []byte("e"), []byte("5"))
	update(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		c := b.Cursor() // made before the writes, positioned after them
		if err := b.Put([]byte("b"), []byte("2")); err != nil {
			return err
		}
		if err := b.Put([]byte("c"), []byte("3'")); err != nil {
			return err
		}
		if err := b.Delete([]byte("e")); err != nil {
			return err
		}
		if err := b.Put([]byte("f"), []byte("6")); err != nil {
			return err
		}
		if got := b.Get([]byte("b")); string(got) != "2" {
			t.Errorf("Get(b) after Put = %s", fmtKey(got))
		}
		if got := b.Get([]byte("c")); string(got) != "3'" {
			t.Errorf("Get(c) after overwrite = %s", fmtKey(got))
		}
		if got := b.Get([]byte("e")); got != nil {
			t.Errorf("Get(e) after Delete = %s", fmtKey(got))
		}
		want := []pair{kv("a", "1"), kv("b", "2"), kv("c", "3'"), kv("f", "6")}
		wantPairs(t, "new cursor", walk(b), want)
		var got []pair
		for k, v := c.First(); k != nil; k, v = c.Next() {
			got = append(got, pair{bytes.Clone(k), bytes.Clone(v)})
		}
		wantPairs(t, "older cursor, repositioned by First", got, want)
		if k, _ := c.Seek([]byte("d")); string(k) != "f" {
			t.Errorf("Seek(d) = %s, want f (e was deleted)", fmtKey(k))
		}
		if k, _ := c.Last(); string(k) != "f" {
			t.Errorf("Last = %s, want f", fmtKey(k))
		}
		// Put then Delete then Put again, all in this transaction.
		for _, step := range []func() error{
			func() error { return b.Put([]byte("g"), []byte("7")) },
			func() error { return b.Delete([]byte("g")) },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		if got := b.Get([]byte("g")); got != nil {
			t.Errorf("Get(g) after Put, Delete = %s", fmtKey(got))
		}
		return nil
	})
	wantPairs(t, "committed", contents(t, s, bA), []pair{kv("a", "1"), kv("b", "2"), kv("c", "3'"), kv("f", "6")})
}

// The vault's way to change a bucket it walks: collect the keys, copied,
// during the walk, and delete them after it (PruneOAuthFlows, sandbox
// delete, audit retention).
func testCollectThenDelete(t *testing.T, s storage.Backend) {
	ensure(t, s)
	var kvs [][]byte
	for _, tenant := range []string{"t1", "t2", "t3"} {
		for i := range 300 {
			kvs = append(kvs, fmt.Appendf(nil, "%s\x00%04d", tenant, i), []byte(tenant))
		}
	}
	putAll(t, s, bA, kvs...)
	update(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		p := []byte("t2\x00")
		var dead [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			dead = append(dead, bytes.Clone(k))
		}
		if err := b.ForEach(func(k, v []byte) error {
			if string(v) == "t3" && bytes.HasSuffix(k, []byte("7")) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if k, _ := b.Cursor().Seek(p); !bytes.HasPrefix(k, []byte("t3\x00")) {
			t.Errorf("Seek(t2) after deleting t2 = %s, want t3's first key", fmtKey(k))
		}
		return nil
	})
	n := map[string]int{}
	for _, p := range contents(t, s, bA) {
		n[string(p.v)]++
		if string(p.v) == "t2" || (string(p.v) == "t3" && bytes.HasSuffix(p.k, []byte("7"))) {
			t.Fatalf("%s was deleted but is there", fmtKey(p.k))
		}
	}
	if n["t1"] != 300 || n["t2"] != 0 || n["t3"] != 270 {
		t.Errorf("keys left per tenant: %v, want t1:300 t3:270", n)
	}
}

// The other way: change the bucket during the walk and reposition with
// Seek after each change.
func testRepositionAfterWrite(t *testing.T, s storage.Backend) {
	ensure(t, s)
	var kvs [][]byte
	for i := range 600 {
		kvs = append(kvs, fmt.Appendf(nil, "k%04d", i), []byte("v"))
	}
	putAll(t, s, bA, kvs...)
	var seen []string
	update(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		c := b.Cursor()
		for k, _ := c.First(); k != nil; {
			cur := bytes.Clone(k)
			seen = append(seen, string(cur))
			var i int
			fmt.Sscanf(string(cur), "k%04d", &i)
			switch {
			case i%3 == 0: // delete the key the cursor is on
				if err := b.Delete(cur); err != nil {
					return err
				}
			case i%3 == 1: // rewrite it, and add one right behind it
				if err := b.Put(cur, []byte("v'")); err != nil {
					return err
				}
				if err := b.Put(append(bytes.Clone(cur), '+'), []byte("added")); err != nil {
					return err
				}
			}
			// Reposition: past the key we were on (and what we added).
			k, _ = c.Seek(append(cur, '+', 0))
		}
		return nil
	})
	if len(seen) != 600 {
		t.Errorf("the walk saw %d keys, want 600 (keys added behind it are skipped by the Seek)", len(seen))
	}
	var want []pair
	for i := range 600 {
		k := fmt.Sprintf("k%04d", i)
		switch i % 3 {
		case 1:
			want = append(want, kv(k, "v'"), kv(k+"+", "added"))
		case 2:
			want = append(want, kv(k, "v"))
		}
	}
	wantPairs(t, "committed", contents(t, s, bA), want)
}

// Walking one bucket while writing another (sandbox delete walks its
// placeholders and deletes from the placeholder index).
func testWalkWhileWritingOtherBucket(t *testing.T, s storage.Backend) {
	ensure(t, s)
	var kvs [][]byte
	for i := range 700 {
		kvs = append(kvs, fmt.Appendf(nil, "ph%04d", i), fmt.Appendf(nil, "core%04d", i))
	}
	putAll(t, s, bA, kvs...)
	var cores [][]byte
	for i := 1; i < len(kvs); i += 2 {
		cores = append(cores, kvs[i], []byte("x"))
	}
	putAll(t, s, bB, cores...)
	n := 0
	update(t, s, func(tx storage.Tx) error {
		a, b := tx.Bucket(bA), tx.Bucket(bB)
		p := []byte("ph")
		c := a.Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if want := fmt.Sprintf("ph%04d", n); string(k) != want {
				t.Errorf("walk step %d at %s, want %s", n, fmtKey(k), want)
				return nil
			}
			n++
			if b.Get(v) == nil {
				t.Errorf("Get(%s) in the other bucket is nil", fmtKey(v))
			}
			if err := b.Delete(v); err != nil {
				return err
			}
			if err := b.Put(append([]byte("new-"), v...), []byte("y")); err != nil {
				return err
			}
		}
		return nil
	})
	if n != 700 {
		t.Errorf("the walk saw %d keys, want 700", n)
	}
	got := contents(t, s, bB)
	if len(got) != 700 {
		t.Fatalf("the other bucket holds %d keys, want 700", len(got))
	}
	for _, p := range got {
		if !bytes.HasPrefix(p.k, []byte("new-")) {
			t.Fatalf("the other bucket still holds %s", fmtKey(p.k))
		}
	}
}

func testRollbackOnError(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("1"), []byte("b"), []byte("2"))
	putAll(t, s, bB, []byte("x"), []byte("9"))
	before, beforeB := contents(t, s, bA), contents(t, s, bB)
	err := s.Update(func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		if err := b.Put([]byte("a"), []byte("changed")); err != nil {
			return err
		}
		if err := b.Delete([]byte("b")); err != nil {
			return err
		}
		for i := range 500 {
			if err := b.Put(fmt.Appendf(nil, "new%d", i), []byte("n")); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bB).Delete([]byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("after the writes: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update whose fn failed returned %v, want its error", err)
	}
	wantPairs(t, "alpha after the failed Update", contents(t, s, bA), before)
	wantPairs(t, "beta after the failed Update", contents(t, s, bB), beforeB)
	// The store goes on working.
	putAll(t, s, bA, []byte("c"), []byte("3"))
	wantPairs(t, "after the next Update", contents(t, s, bA), append(before, kv("c", "3")))
	// A View's error comes back as is too.
	if err := s.View(func(storage.Tx) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("View whose fn failed returned %v, want its error", err)
	}
}

func testRollbackOnPanic(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("1"))
	before := contents(t, s, bA)
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the panic of fn to pass on", r)
			}
		}()
		s.Update(func(tx storage.Tx) error {
			if err := tx.Bucket(bA).Put([]byte("a"), []byte("changed")); err != nil {
				return err
			}
			if err := tx.Bucket(bA).Put([]byte("b"), []byte("new")); err != nil {
				return err
			}
			panic(errBoom)
		})
	}()
	wantPairs(t, "after a panicking Update", contents(t, s, bA), before)
	// Nothing is left held: the next Update and View run.
	putAll(t, s, bA, []byte("c"), []byte("3"))
	wantPairs(t, "after the next Update", contents(t, s, bA), append(before, kv("c", "3")))
}

func testViewNotWritable(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("1"))
	view(t, s, func(tx storage.Tx) error {
		if tx.Writable() {
			t.Errorf("a View's Writable() is true")
		}
		b := tx.Bucket(bA)
		if err := b.Put([]byte("a"), []byte("changed")); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("Put in a View = %v, want ErrTxNotWritable", err)
		}
		if err := b.Put([]byte("b"), []byte("new")); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("Put in a View = %v, want ErrTxNotWritable", err)
		}
		if err := b.Delete([]byte("a")); !errors.Is(err, storage.ErrTxNotWritable) {
			t.Errorf("Delete in a View = %v, want ErrTxNotWritable", err)
		}
		if got := b.Get([]byte("a")); string(got) != "1" {
			t.Errorf("Get(a) after refused writes = %s", fmtKey(got))
		}
		return nil
	})
	wantPairs(t, "after a View's writes", contents(t, s, bA), []pair{kv("a", "1")})
	update(t, s, func(tx storage.Tx) error {
		if !tx.Writable() {
			t.Errorf("an Update's Writable() is false")
		}
		return nil
	})
	if err := s.Batch(func(tx storage.Tx) error {
		if !tx.Writable() {
			t.Errorf("a Batch's Writable() is false")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
