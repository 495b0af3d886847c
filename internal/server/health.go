package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/vault"
)

// health answers the unauthenticated probes of the admin listener.
type health struct {
	ready atomic.Bool
	// checks are what /readyz asks, in order, once the server serves;
	// the first that fails makes it 503 with its name and error.
	checks []readyCheck
}

// readyCheck is one condition of /readyz. fn must be cheap or cached: a
// load balancer asks every few seconds, per replica.
type readyCheck struct {
	name string
	fn   func() error
}

// readyChecks are the checks of /readyz for the open vault:
//   - store: the store answers a read (storeProbe: a View with a short
//     timeout, cached for a second); false while a shared store is
//     unreachable.
//   - changes: a shared store's change feed hears every other replica's
//     write (changesReady); always true on bbolt.
//   - master_key: this replica holds the master key the vault is sealed by
//     (vault.Store.KeyStatus); false on a replica of a shared store that
//     was rekeyed to a key it was not given.
//   - audit: the audit rows this node journals reach the store
//     (auditReady).
//
// A new condition is one more entry here.
func readyChecks(st *vault.Store) []readyCheck {
	return readyChecksOf(st, storeProbeTimeout, storeProbeTTL)
}

func readyChecksOf(st *vault.Store, timeout, ttl time.Duration) []readyCheck {
	p := &storeProbe{ping: func() error { return pingStore(st) }, timeout: timeout, ttl: ttl, now: time.Now}
	return []readyCheck{
		{"store", p.check},
		{"changes", func() error { return changesReady(st) }},
		{"master_key", st.KeyStatus},
		{"audit", func() error { return auditReady(st) }},
	}
}

// healthz says the process serves HTTP.
func (h *health) healthz(w http.ResponseWriter, _ *http.Request) {
	writeStatus(w, http.StatusOK, "ok", "")
}

// readyz says egressd can answer: it is not shutting down and every check
// passes.
func (h *health) readyz(w http.ResponseWriter, _ *http.Request) {
	if !h.ready.Load() {
		writeStatus(w, http.StatusServiceUnavailable, "unavailable", "not serving (starting or shutting down)")
		return
	}
	for _, c := range h.checks {
		if err := c.fn(); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "unavailable", c.name+": "+err.Error())
			return
		}
	}
	writeStatus(w, http.StatusOK, "ready", "")
}

// pingStore reads one key through a View: the cheapest round trip of the
// store (on PostgreSQL a transaction of one SELECT).
func pingStore(st *vault.Store) error {
	err := st.Read(func(r *vault.Reader) error {
		_, err := r.Tenant("")
		if errors.Is(err, vault.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("vault cannot be read: %w", err)
	}
	return nil
}

const (
	// storeProbeTimeout bounds how long /readyz waits for the store.
	storeProbeTimeout = 2 * time.Second
	// storeProbeTTL is how long a probe's answer is reused.
	storeProbeTTL = time.Second
)

// errStoreTimeout is the probe's answer when the store did not answer
// within its timeout.
var errStoreTimeout = errors.New("the store did not answer in time")

// storeProbe runs ping at most once per ttl and waits for it at most
// timeout. A ping that outlives its timeout keeps running (a View cannot
// be cancelled from outside; the store's own transaction timeout ends
// it), and callers meanwhile get errStoreTimeout without starting
// another: however often /readyz is asked, one ping at a time reaches
// the store.
type storeProbe struct {
	ping         func() error
	timeout, ttl time.Duration
	now          func() time.Time

	mu       sync.Mutex
	at       time.Time     // when the cached answer was taken
	err      error         // the cached answer
	inflight chan struct{} // closed when the running ping ends; nil if none
}

func (p *storeProbe) check() error {
	p.mu.Lock()
	if !p.at.IsZero() && p.now().Sub(p.at) < p.ttl {
		err := p.err
		p.mu.Unlock()
		return err
	}
	done := p.inflight
	if done == nil {
		done = make(chan struct{})
		p.inflight = done
		go p.run(done)
	}
	p.mu.Unlock()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-time.After(p.timeout):
		p.mu.Lock()
		defer p.mu.Unlock()
		p.at, p.err = p.now(), errStoreTimeout
		return errStoreTimeout
	}
}

func (p *storeProbe) run(done chan struct{}) {
	err := p.ping()
	p.mu.Lock()
	p.at, p.err, p.inflight = p.now(), err, nil
	p.mu.Unlock()
	close(done)
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	body := map[string]string{"status": status}
	if reason != "" {
		body["reason"] = reason
	}
	_ = json.NewEncoder(w).Encode(body)
}
