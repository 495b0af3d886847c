package resolver

import (
	"context"
	"errors"

	"github.com/egressd/egressd/vault"
)

type cachedSettings struct {
	s   vault.Settings
	gen uint64
}

// Settings returns a tenant's settings, cached until the tenant's next
// write; read from the vault on every call while Config.Fresh is false.
func (r *Resolver) Settings(ctx context.Context, tenantID string) (vault.Settings, error) {
	tg := r.gen(tenantID)
	if r.fresh() {
		r.mu.RLock()
		c, ok := r.settings[tenantID]
		r.mu.RUnlock()
		if ok && c.gen == tg.Load() {
			return c.s, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return vault.Settings{}, err
	}
	before := tg.Load()
	var t vault.Tenant
	err := r.store.Read(func(rd *vault.Reader) error {
		var err error
		t, err = rd.Tenant(tenantID)
		return err
	})
	if errors.Is(err, vault.ErrNotFound) {
		return vault.Settings{}, ErrUnknownSandbox
	}
	if err != nil {
		return vault.Settings{}, err
	}
	r.mu.Lock()
	r.settings[tenantID] = &cachedSettings{s: t.Settings, gen: before}
	r.mu.Unlock()
	return t.Settings, nil
}
