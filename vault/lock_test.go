package vault

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// heldLocalLocks counts the in-process lock entries.
func heldLocalLocks() int {
	localLocks.mu.Lock()
	defer localLocks.mu.Unlock()
	return len(localLocks.m)
}

// WithLock: one holder of a name at a time, among goroutines and among the
// Stores sharing a backend (As, WithAudit); other names do not wait; a
// wait ends with ctx; nothing is left behind.
func TestWithLock(t *testing.T) {
	s := openTest(t)
	_, local := s.backend.(storage.Locker)
	local = !local
	stores := []*Store{s, s.As(Actor{Kind: ActorOperator, ID: "a"}), s.WithAudit("x", nil)}
	var inside, most, runs atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		st := stores[i%len(stores)]
		wg.Go(func() {
			for range 5 {
				err := st.WithLock(context.Background(), "test:one", func(ctx context.Context) error {
					n := inside.Add(1)
					defer inside.Add(-1)
					for {
						m := most.Load()
						if n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					runs.Add(1)
					time.Sleep(200 * time.Microsecond)
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || runs.Load() != 60 {
		t.Errorf("%d runs, at most %d holders at once (want 60, 1)", runs.Load(), most.Load())
	}

	// Held: another name is taken at once, the same name waits until ctx
	// ends, and fn does not run.
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.WithLock(context.Background(), "test:held", func(context.Context) error {
			close(held)
			<-release
			return errors.New("fn's own error")
		})
	}()
	<-held
	if err := s.WithLock(context.Background(), "test:other", func(context.Context) error { return nil }); err != nil {
		t.Errorf("another name while one is held: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	ran := false
	err := stores[1].WithLock(ctx, "test:held", func(context.Context) error { ran = true; return nil })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || ran || time.Since(start) > 5*time.Second {
		t.Errorf("waiting for a held lock past ctx: %v after %v, fn ran: %v (want DeadlineExceeded, not run)", err, time.Since(start), ran)
	}
	close(release)
	if err := <-done; err == nil || err.Error() != "fn's own error" {
		t.Errorf("WithLock returned %v (want fn's error as it is)", err)
	}
	// Released: taken again at once.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WithLock(ctx, "test:held", func(context.Context) error { return nil }); err != nil {
		t.Errorf("after release: %v", err)
	}
	// A panicking fn releases it too.
	func() {
		defer func() { recover() }()
		s.WithLock(ctx, "test:held", func(context.Context) error { panic("boom") })
	}()
	if err := s.WithLock(ctx, "test:held", func(context.Context) error { return nil }); err != nil {
		t.Errorf("after a panic in fn: %v", err)
	}
	if err := s.WithLock(ctx, "", func(context.Context) error { return nil }); !errors.Is(err, storage.ErrLockName) {
		t.Errorf("empty name: %v (want ErrLockName)", err)
	}
	if local {
		if n := heldLocalLocks(); n != 0 {
			t.Errorf("%d in-process lock entries left after every lock ended (want 0)", n)
		}
	}
}

// Two vaults on two backends (files) lock apart: the in-process lock is
// per backend.
func TestWithLockPerBackend(t *testing.T) {
	a, b := openTest(t), openTest(t)
	held := make(chan struct{})
	release := make(chan struct{})
	go a.WithLock(context.Background(), "test:x", func(context.Context) error {
		close(held)
		<-release
		return nil
	})
	defer close(release)
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WithLock(ctx, "test:x", func(context.Context) error { return nil }); err != nil {
		t.Errorf("the same name on another vault: %v", err)
	}
}
