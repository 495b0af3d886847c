package vault

import (
	"context"
	"fmt"
	"sync"

	"github.com/egressd/egressd/vault/storage"
)

// WithLock runs fn while holding the lock called name, waiting for it as
// long as ctx allows (fn does not run if ctx ends first). On a backend
// shared by several processes that can lock across them (a
// storage.Locker: vault/pgstore) the lock holds across every replica;
// otherwise (vault/boltstore, one process) it is a mutex of this process,
// shared by every Store on the same backend (those made by As and
// WithAudit included). fn's context is canceled, with cause
// storage.ErrLockLost, if the lock is lost while fn runs (see
// storage.Locker); the in-process lock is never lost. Locks are not
// reentrant. Callers prefix their names with what they lock for, such as
// "oauth-refresh:".
//
// fn typically reads, decides and writes through the Store: the lock
// makes that sequence exclusive against every other holder of the name,
// which the Update transactions alone do not when the decision involves
// a call outside the store (a token refresh at a provider).
func (s *Store) WithLock(ctx context.Context, name string, fn func(context.Context) error) error {
	if name == "" {
		return storage.ErrLockName
	}
	if l, ok := s.backend.(storage.Locker); ok {
		return l.Lock(ctx, name, fn)
	}
	return localLocks.do(ctx, s.backend, name, fn)
}

// localLocks are the in-process locks of backends without a Locker, by
// backend and name. An entry lives while its lock is held or waited for.
var localLocks keyedMutex

type keyedMutex struct {
	mu sync.Mutex
	m  map[localKey]*localLock
}

type localKey struct {
	backend storage.Backend
	name    string
}

// localLock is one name's mutex: a token in ch is the lock held; users
// counts its holder and waiters.
type localLock struct {
	ch    chan struct{}
	users int
}

func (k *keyedMutex) do(ctx context.Context, b storage.Backend, name string, fn func(context.Context) error) error {
	key := localKey{b, name}
	k.mu.Lock()
	if k.m == nil {
		k.m = map[localKey]*localLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &localLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}()
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("vault: lock %q: %w", name, ctx.Err())
	}
	defer func() { <-l.ch }()
	if err := ctx.Err(); err != nil { // both ready: ctx wins
		return fmt.Errorf("vault: lock %q: %w", name, err)
	}
	return fn(ctx)
}
