package boltstore

import berrors "go.etcd.io/bbolt/errors"

// ErrClosed is what a transaction on a closed Store returns (bbolt's
// ErrDatabaseNotOpen). A lock held past Options.Timeout is
// storage.ErrLocked.
var ErrClosed = berrors.ErrDatabaseNotOpen
