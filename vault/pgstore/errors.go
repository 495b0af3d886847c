package pgstore

import "errors"

// ErrSchemaTooNew is returned by Open and Migrate when the store's schema
// has a version this egressd does not know: a newer egressd migrated it.
// Run that version (or newer), or restore the database.
var ErrSchemaTooNew = errors.New("pgstore: the store's schema is newer than this egressd")

// ErrClosed is returned by a transaction or EnsureBuckets after Close.
var ErrClosed = errors.New("pgstore: store closed")

// ErrBucketName is returned by EnsureBuckets for a bucket name that is not
// UTF-8, holds a NUL byte, or is longer than 255 bytes (names are text).
var ErrBucketName = errors.New("pgstore: bucket name must be UTF-8 without NUL, at most 255 bytes")

// ErrBadDSN is returned by Open and Migrate when the DSN does not parse.
// The DSN is not quoted: it may hold a password.
var ErrBadDSN = errors.New("pgstore: the DSN does not parse (a libpq key=value string or a postgres:// URL; not quoted here, it may hold a password)")

// ErrForeignTx is returned by Publish given a transaction that is not an
// Update or Batch of the same Store.
var ErrForeignTx = errors.New("pgstore: Publish needs a transaction of the same store")

// ErrTopic is returned by Publish for a topic that is empty, longer than
// storage.MaxTopicSize, not UTF-8 or holds a NUL byte.
var ErrTopic = errors.New("pgstore: change topic must be 1 to 255 bytes of UTF-8 without NUL")
