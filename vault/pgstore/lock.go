package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/storage"
)

var _ storage.Locker = (*Store)(nil)

// MinLockConns is how many locks a Store holds at once at least: each
// held lock is a connection of its own, outside the pool, and a Store
// holds at most max(MinLockConns, the pool's MaxConns) of them; more Locks
// wait in the process (bounded by their ctx) for one to end.
const MinLockConns = 8

// Lock implements storage.Locker: it runs fn while holding a PostgreSQL
// advisory lock on name, for every replica on this schema.
//
// The lock is a session lock (pg_advisory_lock) on a connection of its
// own, opened from the pool's configuration but never part of the pool,
// unlocked when fn returns and then closed: the end of that session
// releases the lock whatever happened to the unlock.
// Why so:
//   - Not a pooled connection: fn uses the store (its reads and its
//     Update need pool connections) while the lock's connection is held,
//     so locks of many names at once could hold every pooled connection
//     and leave fn waiting for one after its effect (a rotated refresh
//     token from a provider) and before storing it. Lock connections are
//     counted apart (MinLockConns) instead.
//   - Closed, never handed back: no path (fn's error or panic, ctx ending
//     during the wait, a lost network) can leave a lock held by a
//     connection that something else then uses; a session that ends, for
//     any reason, releases its locks in the server.
//   - A session lock rather than a transaction-scoped one in a transaction
//     kept open: the same release, without a session idle in transaction
//     for fn's duration (which operators bound with
//     idle_in_transaction_session_timeout).
//
// The key is one bigint, the first 8 bytes of SHA-256 over a label, the
// schema and name: a bigint key never conflicts with the two-int4 keys of
// the store's migration and update locks (PostgreSQL keeps the two forms
// apart), and replicas of another schema on the same database lock other
// keys.
//
// While fn runs, the lock's connection is watched (it waits to read from
// the server, idle): if it ends (pg_terminate_backend, a restart, a
// network error), the lock is gone and fn's context is canceled with
// storage.ErrLockLost. A wait that ctx ends is canceled in the server
// too (pgx sends a cancel request as it closes a connection interrupted
// mid-statement), so no session is left queued for the lock.
func (s *Store) Lock(ctx context.Context, name string, fn func(context.Context) error) error {
	if name == "" {
		return storage.ErrLockName
	}
	if s.closed.Load() {
		return ErrClosed
	}
	release, err := s.lockSlot(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: lock %q: wait for a lock connection: %w", name, err)
	}
	defer release()
	conn, err := s.lockConn(ctx)
	if err != nil {
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("pgstore: lock %q: connect: %w", name, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) // the session's end releases the lock
	}()
	key := lockKey(s.opts.Schema, name)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1::int8)", key); err != nil {
		if ctx.Err() != nil {
			// pgx closed the connection, sending the server a cancel
			// request first: the wait does not stay queued for the lock.
			return fmt.Errorf("pgstore: lock %q: %w", name, ctx.Err())
		}
		return fmt.Errorf("pgstore: lock %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil { // granted as ctx ended: not held past here
		return fmt.Errorf("pgstore: lock %q: %w", name, err)
	}
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			// Only an error returns (nothing LISTENs on this session): the
			// connection ended, or stop.
			if err := conn.PgConn().WaitForNotification(wctx); err != nil {
				if wctx.Err() == nil {
					cancel(storage.ErrLockLost)
				}
				return
			}
		}
	}()
	defer func() { // before the connection closes
		stop()
		<-watched
		// Released before Lock returns, so that what follows in this
		// process finds it free; should the unlock fail, the close that
		// follows releases it (the server ends the session at once).
		if !conn.IsClosed() && context.Cause(fctx) != storage.ErrLockLost {
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn.Exec(uctx, "SELECT pg_advisory_unlock($1::int8)", key)
			cancel()
		}
	}()
	return fn(fctx)
}

// lockKey is the advisory lock key of name on schema.
func lockKey(schema, name string) int64 {
	h := sha256.New()
	h.Write([]byte("egressd/pgstore lock\x00"))
	h.Write([]byte(schema))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// lockConn opens a connection of its own for a lock, configured as the
// pool's. The lock's wait is bounded by Lock's ctx alone: no
// statement_timeout or lock_timeout of the role or database cuts it, and
// no idle_in_transaction_session_timeout applies (it never is in one).
func (s *Store) lockConn(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config().ConnConfig
	cfg.RuntimeParams["statement_timeout"] = "0"
	cfg.RuntimeParams["lock_timeout"] = "0"
	if cfg.RuntimeParams["application_name"] == "egressd" {
		cfg.RuntimeParams["application_name"] = "egressd-lock"
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// lockSlots bounds the lock connections of each Store. An entry lives
// while a Lock of its store is under way (or waiting), so a closed store
// leaves nothing behind.
var lockSlots struct {
	mu sync.Mutex
	m  map[*Store]*slots
}

type slots struct {
	ch    chan struct{}
	users int
}

// lockSlot waits for one of the store's lock connections to be free.
func (s *Store) lockSlot(ctx context.Context) (release func(), err error) {
	lockSlots.mu.Lock()
	if lockSlots.m == nil {
		lockSlots.m = map[*Store]*slots{}
	}
	sl := lockSlots.m[s]
	if sl == nil {
		sl = &slots{ch: make(chan struct{}, max(MinLockConns, int(s.pool.Stat().MaxConns())))}
		lockSlots.m[s] = sl
	}
	sl.users++
	lockSlots.mu.Unlock()
	leave := func() {
		lockSlots.mu.Lock()
		if sl.users--; sl.users == 0 {
			delete(lockSlots.m, s)
		}
		lockSlots.mu.Unlock()
	}
	select {
	case sl.ch <- struct{}{}:
		return func() { <-sl.ch; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}
