// Package boltstore is the vault's embedded backend: vault/storage on one
// bbolt file (go.etcd.io/bbolt), locked by the one process that has it
// open. It is the default store of egressd and needs no server.
//
// Buckets, transactions and cursors are bbolt's, reached through thin
// wrappers that allocate nothing: Batch is bbolt's db.Batch (group commit
// of concurrent writers, which may run a function twice), FillHint sets
// the bucket's FillPercent. What only a file has (its path, bbolt's
// statistics, the *bbolt.DB itself) is on *Store, outside the seam.
package boltstore

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/egressd/egressd/vault/storage"
)

var (
	_ storage.Backend = (*Store)(nil)
	_ storage.Tx      = (*tx)(nil)
	_ storage.Bucket  = (*bucket)(nil)
	_ storage.Cursor  = (*cursor)(nil)
)

// DefaultTimeout is how long Open waits for the file lock when
// Options.Timeout is zero.
const DefaultTimeout = time.Second

// Options configures Open. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process;
	// zero means DefaultTimeout (bbolt itself would wait forever). Past
	// it Open fails with an error wrapping storage.ErrLocked.
	Timeout time.Duration
	// NoSync skips fsync on commit: a crash of the machine may lose
	// commits or corrupt the file. Only for tests and benchmarks.
	NoSync bool
	// FreelistMap keeps bbolt's free page list as a hashmap
	// (bbolt.FreelistMapType), faster than the default array once the
	// file has many free pages. It is not stored in the file: each Open
	// chooses.
	FreelistMap bool
}

// Store is an open bbolt file. It implements storage.Backend; its other
// methods are what only a file has.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens the bbolt file at path, creating it (mode 0600) if absent;
// its directory must exist. Its errors are bbolt's as they are, except a
// lock held past opts.Timeout: an error wrapping storage.ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	bo := &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync}
	if opts.FreelistMap {
		bo.FreelistType = bolt.FreelistMapType
	}
	db, err := bolt.Open(path, 0o600, bo)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: open %s: %w (%w)", path, storage.ErrLocked, err)
		}
		return nil, err
	}
	return &Store{db: db, path: path}, nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(storage.Tx) error) error {
	return s.db.View(func(t *bolt.Tx) error { return fn((*tx)(t)) })
}

// Update runs fn in a read-write transaction.
func (s *Store) Update(fn func(storage.Tx) error) error {
	return s.db.Update(func(t *bolt.Tx) error { return fn((*tx)(t)) })
}

// Batch runs fn through bbolt's db.Batch: concurrent callers' functions
// share a commit, and a function whose batch failed is run again alone.
func (s *Store) Batch(fn func(storage.Tx) error) error {
	return s.db.Batch(func(t *bolt.Tx) error { return fn((*tx)(t)) })
}

// EnsureBuckets creates the named buckets that do not exist yet, in one
// transaction. When they all exist it writes nothing: opening a file
// leaves it as it was.
func (s *Store) EnsureBuckets(names ...[]byte) error {
	missing := false
	if err := s.db.View(func(t *bolt.Tx) error {
		for _, name := range names {
			if t.Bucket(name) == nil {
				missing = true
				break
			}
		}
		return nil
	}); err != nil || !missing {
		return err
	}
	return s.db.Update(func(t *bolt.Tx) error {
		for _, name := range names {
			if _, err := t.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("boltstore: create bucket %s: %w", name, err)
			}
		}
		return nil
	})
}

// Close closes the file and releases its lock. A second Close does nothing.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path (also after Close).
func (s *Store) Path() string { return s.path }

// Stats are bbolt's statistics of the open file (transactions, pages
// written, free pages), for tests and metrics.
func (s *Store) Stats() bolt.Stats { return s.db.Stats() }

// DB is the bbolt database itself, for what the seam does not carry:
// tuning db.Batch (MaxBatchSize, MaxBatchDelay), tests that inspect pages
// or write what the vault would refuse. Transactions begun on it are
// bbolt's own, not the seam's.
func (s *Store) DB() *bolt.DB { return s.db }

// tx, bucket and cursor are bbolt's types seen through the seam. They are
// pointers to bbolt's, so putting one in an interface allocates nothing.
type (
	tx     bolt.Tx
	bucket bolt.Bucket
	cursor bolt.Cursor
)

func (t *tx) Bucket(name []byte) storage.Bucket {
	b := (*bolt.Tx)(t).Bucket(name)
	if b == nil {
		return nil // an untyped nil: a missing bucket compares == nil
	}
	return (*bucket)(b)
}

func (t *tx) Writable() bool { return (*bolt.Tx)(t).Writable() }

func (b *bucket) Get(key []byte) []byte { return (*bolt.Bucket)(b).Get(key) }

func (b *bucket) Put(key, value []byte) error {
	if (len(key) > storage.MaxKeySize || len(value) > storage.MaxValueSize) && len(key) > 0 && (*bolt.Bucket)(b).Writable() {
		return storage.ErrTooLarge // bbolt would take keys of 32 KiB, values of 2 GiB
	}
	if value == nil {
		// bbolt's Get in the same transaction would answer nil, as for
		// an absent key; []byte{} allocates nothing.
		value = []byte{}
	}
	if err := (*bolt.Bucket)(b).Put(key, value); err != nil {
		return seamErr(err)
	}
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if err := (*bolt.Bucket)(b).Delete(key); err != nil {
		return seamErr(err)
	}
	return nil
}

func (b *bucket) Cursor() storage.Cursor { return (*cursor)((*bolt.Bucket)(b).Cursor()) }

func (b *bucket) ForEach(fn func(k, v []byte) error) error { return (*bolt.Bucket)(b).ForEach(fn) }

func (b *bucket) FillHint(fraction float64) { (*bolt.Bucket)(b).FillPercent = fraction }

func (c *cursor) First() ([]byte, []byte)           { return (*bolt.Cursor)(c).First() }
func (c *cursor) Last() ([]byte, []byte)            { return (*bolt.Cursor)(c).Last() }
func (c *cursor) Seek(seek []byte) ([]byte, []byte) { return (*bolt.Cursor)(c).Seek(seek) }
func (c *cursor) Next() ([]byte, []byte)            { return (*bolt.Cursor)(c).Next() }
func (c *cursor) Prev() ([]byte, []byte)            { return (*bolt.Cursor)(c).Prev() }

// seamErr turns bbolt's errors of Put and Delete into the seam's,
// keeping bbolt's in the chain.
func seamErr(err error) error {
	var s error
	switch {
	case errors.Is(err, berrors.ErrTxNotWritable):
		s = storage.ErrTxNotWritable
	case errors.Is(err, berrors.ErrKeyRequired):
		s = storage.ErrKeyRequired
	case errors.Is(err, berrors.ErrKeyTooLarge), errors.Is(err, berrors.ErrValueTooLarge):
		s = storage.ErrTooLarge
	default:
		return err
	}
	return fmt.Errorf("%w (%w)", s, err)
}
