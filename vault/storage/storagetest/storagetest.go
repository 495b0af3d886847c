// Package storagetest is the conformance suite of the vault's persistence
// seam (vault/storage): every backend passes Run. It checks what the vault
// depends on and nothing a backend may choose.
//
// What it checks, beyond the doc of package storage:
//   - Keys order bytewise (unsigned), 0x00 and 0xff bytes and prefixes
//     included; a cursor walks both ways and across a backend's pages.
//   - Get of an absent key is nil; of a key put with an empty or nil
//     value, a non-nil empty slice.
//   - Writes are seen by the same transaction's later Get, by a cursor
//     created after them, and by one repositioned (First, Last, Seek) after
//     them. The patterns the vault uses to change a bucket it walks: it
//     collects the keys (copied) during the walk and deletes or puts them
//     after it, or repositions the cursor after each change (a Seek to the
//     key it was on); while walking one bucket it may write other buckets
//     freely. Next and Prev right after a write to the walked bucket are
//     not checked (bbolt: "you must reposition your cursor after mutating
//     data"), nor any move after one that returned nil other than First,
//     Last and Seek — except the vault's "seek before" (Seek, then Last if
//     it returned nil, else Prev).
//   - A failed Update (an error, or a panic, which passes on) changes
//     nothing; Put and Delete in a View fail with ErrTxNotWritable.
//   - A View is a snapshot: an Update that commits while it runs changes
//     nothing it reads. Updates are serializable: concurrent
//     read-modify-writes lose nothing, and a check-then-insert over a
//     cursor (the vault's uniqueness checks) inserts once.
//   - Batch: concurrent callers each see their own result; a failing one
//     gets its error and its writes are gone, the others' stay; fn may run
//     more than once (the suite's functions are idempotent).
//   - EnsureBuckets is idempotent and safe concurrently, and keeps data.
//   - Slices the caller copied stay valid after the transaction and after
//     later writes. The suite never modifies a slice a backend returned,
//     nor one it passed to Put before its transaction ended (bbolt keeps
//     them until the commit).
//   - Limits: an empty key is ErrKeyRequired; a key over MaxKeySize or a
//     value over MaxValueSize is ErrTooLarge, and the refusal does not end
//     the transaction (its other writes commit); keys of MaxKeySize and
//     values of MaxValueSize (not with -short) round-trip.
//   - After Close, every transaction and EnsureBuckets fail (no panic).
//   - A backend that keeps the audit log itself (storage.AuditTx) keeps
//     what the vault's queries, exports and retention need (testAudit).
package storagetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/egressd/egressd/vault/storage"
)

// Run runs the suite. open returns a new, empty store, used by one subtest
// only; it cleans up after it itself (t.Cleanup: a temporary file, a
// schema dropped). Run closes each store it opened when its subtest ends,
// before open's own cleanups run, unless the subtest closed it already.
func Run(t *testing.T, open func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Backend)
	}{
		{"CRUD", testCRUD},
		{"AbsentVersusEmpty", testAbsentVersusEmpty},
		{"Buckets", testBuckets},
		{"EnsureBucketsIdempotent", testEnsureBucketsIdempotent},
		{"EnsureBucketsConcurrent", testEnsureBucketsConcurrent},
		{"Limits", testLimits},
		{"KeyOrder", testKeyOrder},
		{"CursorEmpty", testCursorEmpty},
		{"CursorSeek", testCursorSeek},
		{"CursorSeekBefore", testCursorSeekBefore},
		{"CursorPages", testCursorPages},
		{"CursorModel", testCursorModel},
		{"ForEach", testForEach},
		{"OwnWritesSeen", testOwnWritesSeen},
		{"CollectThenDelete", testCollectThenDelete},
		{"RepositionAfterWrite", testRepositionAfterWrite},
		{"WalkWhileWritingOtherBucket", testWalkWhileWritingOtherBucket},
		{"RollbackOnError", testRollbackOnError},
		{"RollbackOnPanic", testRollbackOnPanic},
		{"ViewNotWritable", testViewNotWritable},
		{"ViewSnapshot", testViewSnapshot},
		{"ViewSeesWholeUpdates", testViewSeesWholeUpdates},
		{"SerializableCounter", testSerializableCounter},
		{"SerializableCheckThenInsert", testSerializableCheckThenInsert},
		{"Batch", testBatch},
		{"BatchFailing", testBatchFailing},
		{"CopiedSlicesStayValid", testCopiedSlicesStayValid},
		{"Close", testClose},
		{"Audit", testAudit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, openStore(t, open))
		})
	}
}

// closer closes a store once, at the end of its subtest or when a test
// closes it itself.
type closer struct {
	storage.Backend
	closed bool
}

func (c *closer) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.Backend.Close()
}

func openStore(t *testing.T, open func(t *testing.T) storage.Backend) storage.Backend {
	t.Helper()
	b := open(t)
	if b == nil {
		t.Fatal("open returned a nil backend")
	}
	c := &closer{Backend: b}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

var (
	bA = []byte("alpha")
	bB = []byte("beta")
	bC = []byte("gamma")
)

// errBoom is a transaction function's own error.
var errBoom = errors.New("storagetest: boom")

// ensure creates the suite's usual buckets.
func ensure(t *testing.T, s storage.Backend, names ...[]byte) {
	t.Helper()
	if len(names) == 0 {
		names = [][]byte{bA, bB}
	}
	if err := s.EnsureBuckets(names...); err != nil {
		t.Fatalf("EnsureBuckets: %v", err)
	}
}

func update(t *testing.T, s storage.Backend, fn func(tx storage.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s storage.Backend, fn func(tx storage.Tx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// bucket returns the named bucket of tx, or an error if it is missing.
func bucket(tx storage.Tx, name []byte) (storage.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, errors.New("storagetest: bucket " + string(name) + " missing")
	}
	return b, nil
}

// putAll puts key=value pairs (kv[0]=kv[1], ...) in one Update.
func putAll(t *testing.T, s storage.Backend, name []byte, kv ...[]byte) {
	t.Helper()
	update(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, name)
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := b.Put(kv[i], kv[i+1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// pair is a key and its value, both copied.
type pair struct{ k, v []byte }

// walk reads every pair of a bucket forward with a cursor, copied.
func walk(b storage.Bucket) []pair {
	var out []pair
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		out = append(out, pair{bytes.Clone(k), bytes.Clone(v)})
	}
	return out
}

// contents reads a bucket in a View.
func contents(t *testing.T, s storage.Backend, name []byte) []pair {
	t.Helper()
	var out []pair
	view(t, s, func(tx storage.Tx) error {
		b, err := bucket(tx, name)
		if err != nil {
			return err
		}
		out = walk(b)
		return nil
	})
	return out
}

func samePairs(a, b []pair) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].k, b[i].k) || !bytes.Equal(a[i].v, b[i].v) {
			return false
		}
	}
	return true
}

func wantPairs(t *testing.T, what string, got, want []pair) {
	t.Helper()
	if !samePairs(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, fmtPairs(got), fmtPairs(want))
	}
}

func fmtPairs(ps []pair) string {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, p := range ps {
		if i > 0 {
			buf.WriteByte(' ')
		}
		buf.WriteString(fmtKey(p.k))
		buf.WriteByte('=')
		buf.WriteString(fmtKey(p.v))
	}
	buf.WriteByte(']')
	return buf.String()
}

// fmtKey shows a key readably: printable ASCII as is, other bytes as \xNN,
// long ones cut.
func fmtKey(k []byte) string {
	if k == nil {
		return "<nil>"
	}
	const max = 40
	var buf bytes.Buffer
	buf.WriteByte('"')
	for i, c := range k {
		if i == max {
			buf.WriteString("…")
			break
		}
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			buf.WriteByte(c)
			continue
		}
		const hex = "0123456789abcdef"
		buf.WriteString(`\x`)
		buf.WriteByte(hex[c>>4])
		buf.WriteByte(hex[c&15])
	}
	buf.WriteByte('"')
	return buf.String()
}

func kv(k, v string) pair { return pair{[]byte(k), []byte(v)} }
