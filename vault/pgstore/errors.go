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
