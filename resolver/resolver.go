// Package resolver finds the secret a sandbox means by a name: the six-level
// walk of DESIGN.md (binding, user, external user, external workspace,
// workspace, tenant; first match wins; disabled counts as absent), with an
// LRU of decrypted results in front of the vault that every vault write
// invalidates for its tenant before the write returns. With several
// replicas on one store, another replica's write invalidates through the
// store's change feed; while the store cannot vouch that it hears every
// such write (Config.Fresh false), nothing is answered from the cache.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/vault"
)

// Config configures New.
type Config struct {
	// Store is the vault. Required.
	Store *vault.Store
	// Size bounds the cache in (sandbox, name) entries; zero means 65536.
	Size int
	// TTL bounds how long an entry is trusted even without a write; zero
	// means 5 minutes. Writes invalidate at once regardless.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registerer receives the cache metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Fresh reports whether the resolver hears every write that can make
	// what it cached stale: vault.Store.ChangesHealthy, which is false
	// while the change feed of a shared store may be missing other
	// replicas' writes. While it returns false, Resolve, MayUse and
	// Settings answer from the vault, never from the cache (Env and
	// Explain always do); what they read then is cached under the
	// tenant's generation as it was before the read, so the catch-up
	// that ends the outage (a change for each tenant written meanwhile,
	// or AllTenants) makes it stale rather than trusted. It is called on
	// every cache hit: it must be cheap. nil means always true (a store
	// of one process).
	Fresh func() bool
}

// Result is a resolved secret. It is shared with the cache: treat it as
// read-only.
type Result struct {
	// Value is the plaintext; it prints as [redacted].
	Value vault.Value
	// Refresh is the refresh token of an oauth_token secret, if any.
	Refresh vault.Value
	// Secret is the metadata of the secret that matched.
	Secret vault.Secret
	// Level is the step of the walk that matched.
	Level Level
	// BindingID is set when Level is LevelBinding.
	BindingID string
}

type cacheKey struct{ sandbox, name string }

type entry struct {
	res     *Result // nil: nothing resolves
	gen     uint64
	tgen    *atomic.Uint64
	expires int64
}

// Resolver resolves names for sandboxes.
type Resolver struct {
	store *vault.Store
	cache *lru.Cache[cacheKey, *entry]
	hosts *lru.Cache[string, *hostSummary]
	ttl   time.Duration
	now   func() time.Time
	fresh func() bool

	mu       sync.RWMutex
	gens     map[string]*atomic.Uint64
	settings map[string]*cachedSettings

	hits, misses prometheus.Counter
}

// New builds a resolver and subscribes it to the store's writes.
func New(cfg Config) (*Resolver, error) {
	if cfg.Store == nil {
		return nil, errors.New("resolver: no store")
	}
	if cfg.Size == 0 {
		cfg.Size = 1 << 16
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Fresh == nil {
		cfg.Fresh = alwaysFresh
	}
	c, err := lru.New[cacheKey, *entry](cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	hc, err := lru.New[string, *hostSummary](cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	r := &Resolver{
		store: cfg.Store, cache: c, hosts: hc, ttl: cfg.TTL, now: cfg.Now, fresh: cfg.Fresh,
		gens: map[string]*atomic.Uint64{}, settings: map[string]*cachedSettings{},
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "egressd_resolver_cache_hits_total", Help: "Resolve calls answered from the cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "egressd_resolver_cache_misses_total", Help: "Resolve calls that walked the vault."}),
	}
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{r.hits, r.misses} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("resolver: register metrics: %w", err)
			}
		}
	}
	cfg.Store.OnChange(r.Invalidate)
	return r, nil
}

// gen returns the generation counter of a tenant, creating it.
func (r *Resolver) gen(tenantID string) *atomic.Uint64 {
	r.mu.RLock()
	g := r.gens[tenantID]
	r.mu.RUnlock()
	if g != nil {
		return g
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if g = r.gens[tenantID]; g == nil {
		g = new(atomic.Uint64)
		r.gens[tenantID] = g
	}
	return g
}

func alwaysFresh() bool { return true }

// Invalidate drops every cached result of the tenant, or of every tenant
// for vault.AllTenants. The store calls it after each committed write,
// before the write returns to its caller, and for each write of another
// replica that its change feed delivers.
func (r *Resolver) Invalidate(tenantID string) {
	if tenantID == vault.AllTenants {
		// Every cached answer holds its tenant's counter as it was
		// before its read: moving each counter that exists makes them
		// all stale. A counter made after this loop belongs to a read
		// that starts after it.
		r.mu.RLock()
		for _, g := range r.gens {
			g.Add(1)
		}
		r.mu.RUnlock()
		return
	}
	r.gen(tenantID).Add(1)
}

// Resolve returns the secret that name means for the sandbox, walking the
// six levels on a cache miss, or on every call while Config.Fresh is
// false. ErrNoSecret means no level matched; ErrUnknownSandbox that the
// sandbox does not exist.
func (r *Resolver) Resolve(ctx context.Context, sandboxID, name string) (*Result, error) {
	k := cacheKey{sandboxID, name}
	if r.fresh() {
		if e, ok := r.cache.Get(k); ok && e.tgen.Load() == e.gen && r.now().UnixNano() < e.expires {
			r.hits.Inc()
			if e.res == nil {
				return nil, ErrNoSecret
			}
			return e.res, nil
		}
	}
	r.misses.Inc()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The generation is read before the snapshot is taken: a write that
	// commits after this point bumps it, and the entry stored below is then
	// already stale, never wrongly fresh.
	tenantID, err := r.tenantOf(sandboxID)
	if err != nil {
		return nil, err
	}
	tg := r.gen(tenantID)
	before := tg.Load()
	var res *Result
	err = r.readSandbox(tenantID, sandboxID, func(rd *vault.Reader, sbx *vault.Sandbox, t *vault.Tenant) error {
		win, level, binding, _, err := walk(rd, t, sbx, name, false)
		if err != nil || win == nil {
			return err
		}
		v, refresh, version, err := rd.OpenValue(tenantID, win.ID)
		if err != nil {
			return err
		}
		win.Version = version
		res = &Result{Value: v, Refresh: refresh, Secret: *win, Level: level}
		if binding != nil {
			res.BindingID = binding.ID
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.cache.Add(k, &entry{res: res, gen: before, tgen: tg, expires: r.now().Add(r.ttl).UnixNano()})
	if res == nil {
		return nil, ErrNoSecret
	}
	return res, nil
}

// tenantOf finds the tenant of a sandbox; ErrUnknownSandbox if none.
func (r *Resolver) tenantOf(sandboxID string) (string, error) {
	var tenantID string
	err := r.store.Read(func(rd *vault.Reader) error {
		var err error
		tenantID, err = rd.SandboxTenant(sandboxID)
		return err
	})
	if errors.Is(err, vault.ErrNotFound) {
		return "", ErrUnknownSandbox
	}
	return tenantID, err
}

// readSandbox runs fn over one snapshot holding the sandbox and its
// tenant; a sandbox that is not there is ErrUnknownSandbox.
func (r *Resolver) readSandbox(tenantID, sandboxID string, fn func(rd *vault.Reader, sbx *vault.Sandbox, t *vault.Tenant) error) error {
	err := r.store.Read(func(rd *vault.Reader) error {
		sbx, err := rd.Sandbox(tenantID, sandboxID)
		if err != nil {
			return err
		}
		t, err := rd.Tenant(tenantID)
		if err != nil {
			return err
		}
		return fn(rd, &sbx, &t)
	})
	if errors.Is(err, vault.ErrNotFound) {
		return ErrUnknownSandbox
	}
	return err
}

// Len is the number of cached entries.
func (r *Resolver) Len() int { return r.cache.Len() }
