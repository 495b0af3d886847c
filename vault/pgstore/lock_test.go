package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// advisory lists the sessions holding (granted) and waiting for the
// advisory lock of name on s's schema, as pg_locks shows them.
func advisory(t *testing.T, s *Store, name string) (holders []int32, waiting int) {
	t.Helper()
	k := uint64(lockKey(s.Schema(), name))
	rows, err := s.Pool().Query(context.Background(), `SELECT pid, granted FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND classid::int8 = $1 AND objid::int8 = $2
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, int64(k>>32), int64(k&0xffffffff))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int32
		var granted bool
		if err := rows.Scan(&pid, &granted); err != nil {
			t.Fatal(err)
		}
		if granted {
			holders = append(holders, pid)
		} else {
			waiting++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return holders, waiting
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One holder of a name at a time across two replicas; other names and
// another schema's same name do not wait; the lock is a connection of its
// own, not one of the pool's, and it is gone from the server after.
func TestLockMutualExclusion(t *testing.T) {
	ss := openReplicas(t, 2, Options{MaxConns: 2})
	var inside, most, runs atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		s := ss[i%2]
		wg.Go(func() {
			for range 5 {
				err := s.Lock(context.Background(), "test:one", func(ctx context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for {
						m := most.Load()
						if n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					runs.Add(1)
					// The store is usable while the lock is held, with
					// every pooled connection free.
					if got := s.Pool().Stat().AcquiredConns(); got != 0 {
						return fmt.Errorf("%d pooled connections acquired while the lock is held (want 0: the lock has its own)", got)
					}
					time.Sleep(time.Millisecond)
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || runs.Load() != 30 {
		t.Errorf("%d runs, at most %d holders at once (want 30, 1)", runs.Load(), most.Load())
	}
	if h, w := advisory(t, ss[0], "test:one"); len(h) != 0 || w != 0 {
		t.Errorf("after every Lock returned: %d holders, %d waiting in the server (want none)", len(h), w)
	}

	other := openTest(t, Options{}) // another schema
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ss[0].Lock(context.Background(), "test:held", func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	if h, _ := advisory(t, ss[0], "test:held"); len(h) != 1 {
		t.Errorf("held: %d holders in pg_locks (want 1)", len(h))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		s    *Store
		name string
	}{{ss[1], "test:other"}, {other, "test:held"}} {
		if err := c.s.Lock(ctx, c.name, func(context.Context) error { return nil }); err != nil {
			t.Errorf("%s on schema %s while test:held is held on %s: %v", c.name, c.s.Schema(), ss[0].Schema(), err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ss[0].Lock(ctx, "", func(context.Context) error { return nil }); !errors.Is(err, storage.ErrLockName) {
		t.Errorf("empty name: %v (want ErrLockName)", err)
	}
}

// A wait that ctx ends returns ctx's error without running fn, and the
// server no longer waits either; a panicking fn releases the lock; a
// closed store refuses.
func TestLockWaitCanceled(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ss[0].Lock(context.Background(), "test:w", func(context.Context) error {
			close(held)
			<-release
			return errors.New("fn's own error")
		})
	}()
	<-held
	ctx, cancel := context.WithCancel(context.Background())
	waitErr := make(chan error, 1)
	ran := false
	go func() {
		waitErr <- ss[1].Lock(ctx, "test:w", func(context.Context) error { ran = true; return nil })
	}()
	eventually(t, "the second replica waits in the server", func() bool { _, w := advisory(t, ss[0], "test:w"); return w == 1 })
	start := time.Now()
	cancel()
	err := <-waitErr
	if !errors.Is(err, context.Canceled) || ran || time.Since(start) > 5*time.Second {
		t.Errorf("canceled wait: %v after %v, fn ran: %v (want Canceled at once, not run)", err, time.Since(start), ran)
	}
	eventually(t, "the canceled wait leaves the server's queue", func() bool { _, w := advisory(t, ss[0], "test:w"); return w == 0 })
	// A deadline too.
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	if err := ss[1].Lock(dctx, "test:w", func(context.Context) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait past its deadline: %v", err)
	}
	close(release)
	if err := <-done; err == nil || err.Error() != "fn's own error" {
		t.Errorf("Lock returned %v (want fn's error as it is)", err)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	func() {
		defer func() { recover() }()
		ss[0].Lock(ctx2, "test:w", func(context.Context) error { panic("boom") })
	}()
	if err := ss[1].Lock(ctx2, "test:w", func(context.Context) error { return nil }); err != nil {
		t.Errorf("after a holder panicked: %v", err)
	}
	ss[0].Close()
	if err := ss[0].Lock(ctx2, "test:w", func(context.Context) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock on a closed store: %v (want ErrClosed)", err)
	}
}

// A holder whose connection ends (pg_terminate_backend, as a replica that
// died or lost its database would) releases the lock: a replica waiting
// for it proceeds, and the holder's fn sees its context canceled with
// ErrLockLost.
func TestLockHolderConnectionTerminated(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	held := make(chan struct{})
	cause := make(chan error, 1)
	go ss[0].Lock(context.Background(), "test:d", func(ctx context.Context) error {
		close(held)
		select {
		case <-ctx.Done():
			cause <- context.Cause(ctx)
		case <-time.After(30 * time.Second):
			cause <- errors.New("fn's context was not canceled within 30 s")
		}
		return nil
	})
	<-held
	got := make(chan struct{})
	waitErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		waitErr <- ss[1].Lock(ctx, "test:d", func(context.Context) error { close(got); return nil })
	}()
	eventually(t, "the second replica waits", func() bool { _, w := advisory(t, ss[0], "test:d"); return w == 1 })
	h, _ := advisory(t, ss[0], "test:d")
	if len(h) != 1 {
		t.Fatalf("%d holders", len(h))
	}
	var ok bool
	if err := ss[1].Pool().QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", h[0]).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v %v", ok, err)
	}
	if err := <-waitErr; err != nil {
		t.Fatalf("the waiting replica after the holder's connection ended: %v", err)
	}
	select {
	case <-got:
	default:
		t.Error("the waiting replica's fn did not run")
	}
	if err := <-cause; !errors.Is(err, storage.ErrLockLost) {
		t.Errorf("the holder's fn context: %v (want ErrLockLost)", err)
	}
}

// Keys differ by schema and name, and are stable (a schema name holds
// no NUL, so the two never run into each other).
func TestLockKey(t *testing.T) {
	a := lockKey("egressd", "oauth-refresh:t:s")
	if a != lockKey("egressd", "oauth-refresh:t:s") || a == lockKey("egressd2", "oauth-refresh:t:s") || a == lockKey("egressd", "oauth-refresh:t:s2") {
		t.Error("lock keys")
	}
}
