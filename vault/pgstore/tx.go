package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
)

// tx is one transaction on its pgx.Tx.
type tx struct {
	s       *Store
	ctx     context.Context
	ptx     pgx.Tx
	write   bool
	err     error              // the first statement that failed: the transaction fails
	buckets map[string]*bucket // handed out in this transaction
}

func (t *tx) Writable() bool { return t.write }

// fail records the first failure; it is what View or Update returns.
func (t *tx) fail(what string, err error) error {
	if t.err == nil {
		t.err = fmt.Errorf("pgstore: %s: %w", what, err)
	}
	return t.err
}

// Bucket returns the named bucket, or nil if EnsureBuckets never made it.
// Buckets are never dropped, so a name once seen needs no query again. If
// the query fails, the transaction has failed and the bucket answers as a
// failed transaction does (rather than nil, which callers take for
// "missing").
func (t *tx) Bucket(name []byte) storage.Bucket {
	if b, ok := t.buckets[string(name)]; ok {
		return b
	}
	if !validBucket(name) {
		return nil
	}
	n := string(name)
	if !t.s.bucketKnown(n) && t.err == nil {
		var exists bool
		if err := t.ptx.QueryRow(t.ctx, t.s.q.bucketExists, n).Scan(&exists); err != nil {
			t.fail("look up bucket", err)
		} else if !exists {
			return nil
		} else {
			t.s.learnBucket(n)
		}
	}
	b := &bucket{t: t, name: n}
	if t.buckets == nil {
		t.buckets = map[string]*bucket{}
	}
	t.buckets[n] = b
	return b
}

// bucket is one bucket inside one transaction.
type bucket struct {
	t    *tx
	name string
	gen  uint64 // counts this transaction's writes to the bucket, for cursors
}

func (b *bucket) Get(key []byte) []byte {
	t := b.t
	if t.err != nil || len(key) == 0 {
		return nil
	}
	var v []byte
	err := t.ptx.QueryRow(t.ctx, t.s.q.get, b.name, key).Scan(&v)
	switch {
	case errorsIsNoRows(err):
		return nil
	case err != nil:
		t.fail("get", err)
		return nil
	case v == nil:
		return []byte{}
	}
	return v
}

func (b *bucket) Put(key, value []byte) error {
	t := b.t
	switch {
	case !t.write:
		return storage.ErrTxNotWritable
	case len(key) == 0:
		return storage.ErrKeyRequired
	case len(key) > storage.MaxKeySize, len(value) > storage.MaxValueSize:
		return storage.ErrTooLarge
	case t.err != nil:
		return t.err
	}
	if value == nil {
		value = []byte{} // nil would be NULL
	}
	b.gen++
	if _, err := t.ptx.Exec(t.ctx, t.s.q.put, b.name, key, value); err != nil {
		return t.fail("put", err)
	}
	return nil
}

func (b *bucket) Delete(key []byte) error {
	t := b.t
	switch {
	case !t.write:
		return storage.ErrTxNotWritable
	case t.err != nil:
		return t.err
	case len(key) == 0:
		return nil
	}
	b.gen++
	if _, err := t.ptx.Exec(t.ctx, t.s.q.del, b.name, key); err != nil {
		return t.fail("delete", err)
	}
	return nil
}

func (b *bucket) Cursor() storage.Cursor { return &cursor{b: b} }

// ForEach walks the bucket with a cursor, page by page; a failed read
// ends it with the transaction's error.
func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

// FillHint is ignored: PostgreSQL's B-tree splits appends well already.
func (b *bucket) FillHint(float64) {}
