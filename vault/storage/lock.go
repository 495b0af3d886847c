package storage

import (
	"context"
	"errors"
)

// Locker is implemented by a backend shared by several processes (the
// replicas of a cluster) that can hold a lock across all of them:
// vault/pgstore does, with a PostgreSQL advisory lock. It is optional: a
// backend of one process (vault/boltstore) has none, and the vault then
// locks within the process (vault.Store.WithLock).
//
// Lock waits for the lock called name, runs fn while holding it, and
// releases it when fn returns (or panics). Only one fn holds a name at a
// time across every process on the backend; names are the caller's own
// (the vault's callers prefix theirs, such as "oauth-refresh:").
//
//   - The wait is bounded by ctx: if ctx ends first, Lock returns an error
//     that wraps ctx's and fn does not run.
//   - fn's context is derived from ctx, and is also canceled, with
//     ErrLockLost as its cause (context.Cause), if the backend loses the
//     lock while fn runs (its database session ended): another process may
//     hold it from then on, so fn must not begin, after that, anything
//     that needs the exclusion.
//   - A lock is not reentrant: fn must not Lock the same name again (it
//     would wait for itself until ctx ends).
//   - Lock returns fn's error as it is, or the backend's error (wrapped)
//     when the lock could not be taken.
type Locker interface {
	Lock(ctx context.Context, name string, fn func(ctx context.Context) error) error
}

// ErrLockLost is the cause of fn's context when a Locker lost the lock
// while fn ran (see Locker).
var ErrLockLost = errors.New("storage: lock lost")

// ErrLockName is returned by Lock for an empty name.
var ErrLockName = errors.New("storage: lock name required")
