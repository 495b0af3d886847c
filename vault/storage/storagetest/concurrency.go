package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// An Update that commits while a View runs changes nothing the View
// reads. A backend may also make the Update wait for the View (bbolt may,
// when it has to grow its file): the View then reads on after a while.
func testViewSnapshot(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("k"), []byte("old"), []byte("m"), []byte("1"))
	want := []pair{kv("k", "old"), kv("m", "1")}
	updated := make(chan error, 1)
	committed := false
	view(t, s, func(tx storage.Tx) error {
		b := tx.Bucket(bA)
		wantPairs(t, "the View before the Update", walk(b), want)
		go func() {
			updated <- s.Update(func(tx storage.Tx) error {
				b := tx.Bucket(bA)
				if err := b.Put([]byte("k"), []byte("new")); err != nil {
					return err
				}
				if err := b.Put([]byte("l"), []byte("new")); err != nil {
					return err
				}
				return b.Delete([]byte("m"))
			})
		}()
		select {
		case err := <-updated:
			if err != nil {
				t.Fatalf("the concurrent Update: %v", err)
			}
			committed = true
		case <-time.After(time.Second):
			t.Log("the Update waits for the View to end")
		}
		if got := b.Get([]byte("k")); string(got) != "old" {
			t.Errorf("Get(k) in the View after the Update = %s, want old", fmtKey(got))
		}
		if got := b.Get([]byte("l")); got != nil {
			t.Errorf("Get(l) in the View after the Update = %s, want nil", fmtKey(got))
		}
		if got := b.Get([]byte("m")); string(got) != "1" {
			t.Errorf("Get(m) in the View after the Update = %s, want 1", fmtKey(got))
		}
		wantPairs(t, "a new cursor in the View after the Update", walk(b), want)
		return nil
	})
	if !committed {
		if err := <-updated; err != nil {
			t.Fatalf("the concurrent Update: %v", err)
		}
	}
	wantPairs(t, "after both", contents(t, s, bA), []pair{kv("k", "new"), kv("l", "new")})
}

// Views running beside a stream of Updates each see an Update whole or
// not at all, across buckets.
func testViewSeesWholeUpdates(t *testing.T, s storage.Backend) {
	ensure(t, s)
	putAll(t, s, bA, []byte("a"), []byte("0"), []byte("b"), []byte("0"))
	putAll(t, s, bB, []byte("c"), []byte("0"))
	done := make(chan struct{})
	var views atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				err := s.View(func(tx storage.Tx) error {
					a := string(tx.Bucket(bA).Get([]byte("a")))
					var walked []string
					for _, p := range walk(tx.Bucket(bA)) {
						walked = append(walked, string(p.v))
					}
					c := string(tx.Bucket(bB).Get([]byte("c")))
					if len(walked) != 2 || walked[0] != a || walked[1] != a || c != a {
						return fmt.Errorf("a View saw a=%s, a walk of %q and c=%s", a, walked, c)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				views.Add(1)
			}
		})
	}
	for i := 1; i <= 40; i++ {
		v := []byte(strconv.Itoa(i))
		update(t, s, func(tx storage.Tx) error {
			for _, step := range []struct {
				b []byte
				k string
			}{{bA, "a"}, {bB, "c"}, {bA, "b"}} {
				if err := tx.Bucket(step.b).Put([]byte(step.k), v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	close(done)
	wg.Wait()
	t.Logf("%d Views beside 40 Updates", views.Load())
}

// Concurrent read-modify-write Updates lose nothing: they behave as if
// run one at a time.
func testSerializableCounter(t *testing.T, s storage.Backend) {
	const workers, each = 8, 10
	ensure(t, s)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				err := s.Update(func(tx storage.Tx) error {
					b := tx.Bucket(bA)
					n := 0
					if v := b.Get([]byte("counter")); v != nil {
						var err error
						if n, err = strconv.Atoi(string(v)); err != nil {
							return err
						}
					}
					time.Sleep(100 * time.Microsecond) // widen the window
					return b.Put([]byte("counter"), []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantPairs(t, "counter", contents(t, s, bA), []pair{kv("counter", strconv.Itoa(workers*each))})
}

// Check-then-insert over a cursor (the vault's "one of these per owner"
// checks) inserts once, however many Updates race: write skew, which
// snapshot isolation alone allows, must not happen.
func testSerializableCheckThenInsert(t *testing.T, s storage.Backend) {
	const workers, rounds = 8, 4
	ensure(t, s)
	for round := range rounds {
		p := fmt.Appendf(nil, "owner%d\x00", round)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				err := s.Update(func(tx storage.Tx) error {
					b := tx.Bucket(bA)
					if k, _ := b.Cursor().Seek(p); k != nil && bytes.HasPrefix(k, p) {
						return nil
					}
					time.Sleep(200 * time.Microsecond)
					return b.Put(fmt.Appendf(bytes.Clone(p), "w%d", w), []byte("mine"))
				})
				if err != nil {
					t.Errorf("Update: %v", err)
				}
			})
		}
		wg.Wait()
	}
	got := contents(t, s, bA)
	if len(got) != rounds {
		t.Errorf("%d keys inserted over %d rounds, want one a round: %s", len(got), rounds, fmtPairs(got))
	}
}

func testBatch(t *testing.T, s storage.Backend) {
	const callers = 16
	ensure(t, s)
	var runs [callers]atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			err := s.Batch(func(tx storage.Tx) error {
				runs[i].Add(1)
				if !tx.Writable() {
					return errors.New("a Batch transaction is not writable")
				}
				// Idempotent: running it twice leaves what running it once does.
				return tx.Bucket(bA).Put(fmt.Appendf(nil, "caller%02d", i), []byte("done"))
			})
			if err != nil {
				t.Errorf("Batch %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var want []pair
	for i := range callers {
		if n := runs[i].Load(); n < 1 {
			t.Errorf("Batch %d ran its function %d times", i, n)
		}
		want = append(want, kv(fmt.Sprintf("caller%02d", i), "done"))
	}
	wantPairs(t, "after the Batches", contents(t, s, bA), want)
}

// A failing Batch function gets its own error back and its writes are
// gone; the other callers' writes stay.
func testBatchFailing(t *testing.T, s storage.Backend) {
	const callers = 16
	ensure(t, s)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			err := s.Batch(func(tx storage.Tx) error {
				if err := tx.Bucket(bA).Put(fmt.Appendf(nil, "caller%02d", i), []byte("done")); err != nil {
					return err
				}
				if i%4 == 0 {
					return fmt.Errorf("caller %d: %w", i, errBoom)
				}
				return nil
			})
			if i%4 == 0 && !errors.Is(err, errBoom) {
				t.Errorf("failing Batch %d returned %v, want its error", i, err)
			}
			if i%4 != 0 && err != nil {
				t.Errorf("Batch %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var want []pair
	for i := range callers {
		if i%4 != 0 {
			want = append(want, kv(fmt.Sprintf("caller%02d", i), "done"))
		}
	}
	wantPairs(t, "after the Batches", contents(t, s, bA), want)
}
