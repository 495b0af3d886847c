// Package storage is the vault's persistence seam: an ordered key-value
// store of named buckets with transactions, the shape of bbolt's API. The
// vault keeps its encryption, validation, indexes and the resolver's walk
// above it, so a backend only ever holds ciphertext, hashes and the
// vault's own records; a backend is untrusted storage.
//
// Two backends implement it: vault/boltstore (the embedded default, one
// process, a file) and vault/pgstore (PostgreSQL, for several replicas).
// vault/storage/storagetest is the conformance suite both pass.
//
// Optional abilities are interfaces of their own: ChangeFeed and Locker
// for a backend several processes share, AuditTx and AuditStore for one
// that keeps the audit log in a store of its own (audit.go).
//
// Semantics every backend keeps (the vault depends on each):
//   - Update transactions are serializable with each other: they behave as
//     if run one at a time (bbolt has one writer; a cluster backend takes a
//     cluster-wide lock or retries), and a failed Update changes nothing.
//   - A View sees one consistent snapshot for its whole run.
//   - Keys are ordered bytewise; Cursor.Seek finds the first key >= seek.
//   - Slices returned by Get and cursors are valid only until the
//     transaction ends, and must not be modified: copy what you keep.
//   - Put and Delete inside an Update are seen by the same transaction's
//     later Get and cursors.
//   - A cursor walking a bucket that the transaction then writes must be
//     repositioned (First, Last, Seek) before its next Next or Prev, as
//     bbolt asks; or collect the keys (copied) during the walk and write
//     after it. Writing other buckets during a walk is fine.
//   - The slices passed to Put must not change until the transaction ends
//     (bbolt keeps them until its commit).
//
// vault/storage/storagetest checks each of these.
package storage

import "errors"

// Backend is an open store.
type Backend interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction, committed if fn returns
	// nil, rolled back otherwise.
	Update(fn func(Tx) error) error
	// Batch is Update for many concurrent small writers: a backend may
	// commit several callers' functions in one transaction, and may run
	// fn more than once (it must be idempotent). A backend without group
	// commit runs it as Update.
	Batch(fn func(Tx) error) error
	// EnsureBuckets creates the named buckets that do not exist yet.
	EnsureBuckets(names ...[]byte) error
	// Close releases the store. Transactions must have ended.
	Close() error
}

// Tx is one transaction.
type Tx interface {
	// Bucket returns the named bucket, or nil if it does not exist.
	Bucket(name []byte) Bucket
	// Writable reports whether this is an Update (or Batch) transaction.
	Writable() bool
}

// Bucket is a sorted map of keys to values inside a transaction.
type Bucket interface {
	// Get returns the value of key, or nil if absent. A present key has a
	// non-nil value (possibly empty).
	Get(key []byte) []byte
	// Put sets key to value: key non-empty and at most MaxKeySize bytes,
	// value at most MaxValueSize bytes (nil is stored as empty).
	Put(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
	// Cursor iterates the bucket in key order.
	Cursor() Cursor
	// ForEach calls fn for every key in order; an error stops it and is
	// returned. fn must not modify the bucket.
	ForEach(fn func(k, v []byte) error) error
	// FillHint says that keys are mostly appended in order, so pages may
	// be filled up to fraction before they split (bbolt's FillPercent); a
	// backend may ignore it.
	FillHint(fraction float64)
}

// Cursor walks a bucket's keys in order. Each method returns the key and
// value it moved to, or nil, nil past either end.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	Seek(seek []byte) (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
}

// Limits every backend accepts. Keys are at most 2 KiB: a PostgreSQL
// B-tree entry (bucket and key) holds at most 2704 bytes, and the vault's
// longest keys (a few ids of at most 128 bytes each) are far below it;
// bbolt alone would take 32 KiB.
const (
	MaxKeySize   = 2 << 10
	MaxValueSize = 64 << 20
)

// ErrTxNotWritable is returned by Put and Delete in a View.
var ErrTxNotWritable = errors.New("storage: transaction not writable")

// ErrKeyRequired is returned by Put of an empty key.
var ErrKeyRequired = errors.New("storage: key required")

// ErrTooLarge is returned by Put of a key or value over the limits.
var ErrTooLarge = errors.New("storage: key or value too large")

// ErrLocked is returned by a backend's open when another process holds the
// store (bbolt's file lock) past the timeout.
var ErrLocked = errors.New("storage: store in use by another process")
