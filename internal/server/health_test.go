package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// flakyBackend is a store that can be made unreachable (every View and
// Update fails) or slow (they block until released).
type flakyBackend struct {
	storage.Backend
	down atomic.Bool
	slow chan struct{} // non-nil: transactions wait for it to close
	mu   sync.Mutex
}

var errDown = errors.New("connection refused")

func (f *flakyBackend) wait() error {
	f.mu.Lock()
	slow := f.slow
	f.mu.Unlock()
	if slow != nil {
		<-slow
	}
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *flakyBackend) View(fn func(storage.Tx) error) error {
	if err := f.wait(); err != nil {
		return err
	}
	return f.Backend.View(fn)
}

func readyCode(h *health) (int, string) {
	w := httptest.NewRecorder()
	h.readyz(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return w.Code, w.Body.String()
}

// /readyz is 503 while the store cannot be read, naming the store check,
// and 200 again once it can; a store that hangs makes it 503 after the
// probe's timeout, not a probe that hangs with it.
func TestReadyzStore(t *testing.T) {
	dir := t.TempDir()
	b, err := boltstore.Open(filepath.Join(dir, "v.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fb := &flakyBackend{Backend: b}
	st, err := vault.Open(vault.Config{Backend: fb, JournalPath: filepath.Join(dir, "journal"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := &health{checks: readyChecksOf(st, 200*time.Millisecond, 0)}
	h.ready.Store(true)
	if c, body := readyCode(h); c != http.StatusOK {
		t.Fatalf("store up: %d %s", c, body)
	}
	fb.down.Store(true)
	if c, body := readyCode(h); c != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"store: vault cannot be read: connection refused"`) {
		t.Fatalf("store down: %d %s", c, body)
	}
	fb.down.Store(false)
	if c, body := readyCode(h); c != http.StatusOK {
		t.Fatalf("store back: %d %s", c, body)
	}
	release := make(chan struct{})
	fb.mu.Lock()
	fb.slow = release
	fb.mu.Unlock()
	start := time.Now()
	c, body := readyCode(h)
	if c != http.StatusServiceUnavailable || !strings.Contains(body, errStoreTimeout.Error()) || time.Since(start) > 2*time.Second {
		t.Fatalf("store hangs: %d %s after %v", c, body, time.Since(start))
	}
	fb.mu.Lock()
	fb.slow = nil
	fb.mu.Unlock()
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _ := readyCode(h); c == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready again after the store answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One ping at a time reaches the store, and an answer is reused for the
// probe's ttl.
func TestStoreProbeCaches(t *testing.T) {
	var pings atomic.Int64
	gate := make(chan struct{})
	var clock atomic.Int64
	p := &storeProbe{
		ping:    func() error { pings.Add(1); <-gate; return nil },
		timeout: 50 * time.Millisecond, ttl: time.Second,
		now: func() time.Time { return time.Unix(clock.Load(), 0) },
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := p.check(); !errors.Is(err, errStoreTimeout) {
				t.Errorf("while the ping hangs: %v", err)
			}
		})
	}
	wg.Wait()
	clock.Add(2) // past the ttl: a check waits for the ping still running
	go func() { time.Sleep(10 * time.Millisecond); close(gate) }()
	if err := p.check(); err != nil {
		t.Fatalf("after the ping answered: %v", err)
	}
	for range 10 {
		if err := p.check(); err != nil {
			t.Fatal(err)
		}
	}
	if n := pings.Load(); n != 1 {
		t.Fatalf("%d pings, want 1", n)
	}
	clock.Add(2)
	if err := p.check(); err != nil || pings.Load() != 2 {
		t.Fatalf("after the ttl: %v, %d pings", err, pings.Load())
	}
}
