package resolver

import (
	"context"
	"errors"

	"github.com/egressd/egressd/vault"
)

// hostSummary is what a sandbox's resolvable secrets allow: any host, or
// the union of their allowed_hosts patterns.
type hostSummary struct {
	any      bool
	patterns []string
	gen      uint64
	tgen     interface{ Load() uint64 }
	expires  int64
}

// MayUse reports whether any secret that resolves for the sandbox now may
// be used on host. The proxy terminates TLS only where this is true and
// tunnels every other host untouched.
func (r *Resolver) MayUse(ctx context.Context, sandboxID, host string) (bool, error) {
	if v, ok := r.hosts.Get(sandboxID); ok && v.tgen.Load() == v.gen && r.now().UnixNano() < v.expires {
		return v.any || vault.HostAllowed(v.patterns, host), nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var tenantID string
	err := r.store.Read(func(rd *vault.Reader) error {
		var err error
		tenantID, err = rd.SandboxTenant(sandboxID)
		return err
	})
	if errors.Is(err, vault.ErrNotFound) {
		return false, ErrUnknownSandbox
	}
	if err != nil {
		return false, err
	}
	tg := r.gen(tenantID)
	sum := &hostSummary{gen: tg.Load(), tgen: tg}
	err = r.store.Read(func(rd *vault.Reader) error {
		sbx, err := rd.Sandbox(tenantID, sandboxID)
		if err != nil {
			return err
		}
		t, err := rd.Tenant(tenantID)
		if err != nil {
			return err
		}
		for name := range candidateNames(rd, &sbx) {
			win, _, _, _, err := walk(rd, &t, &sbx, name, false)
			if err != nil {
				return err
			}
			if win == nil {
				continue
			}
			if len(win.AllowedHosts) == 0 {
				sum.any = true
			}
			sum.patterns = append(sum.patterns, win.AllowedHosts...)
		}
		return nil
	})
	if errors.Is(err, vault.ErrNotFound) {
		return false, ErrUnknownSandbox
	}
	if err != nil {
		return false, err
	}
	sum.expires = r.now().Add(r.ttl).UnixNano()
	r.hosts.Add(sandboxID, sum)
	return sum.any || vault.HostAllowed(sum.patterns, host), nil
}

// candidateNames lists every secret name that could resolve for sbx: the
// names bound to it and those at each of its attribution levels.
func candidateNames(rd *vault.Reader, sbx *vault.Sandbox) map[string]bool {
	names := map[string]bool{}
	if bs, err := rd.BindingsOf(sbx.TenantID, sbx.ID); err == nil {
		for _, b := range bs {
			if sec, err := rd.Secret(sbx.TenantID, b.SecretID); err == nil {
				names[sec.Name] = true
			}
		}
	}
	for _, l := range Levels[1:] {
		_, owner := l.attribute(sbx)
		for _, n := range rd.ScopedNames(sbx.TenantID, l.scope(), owner) {
			names[n] = true
		}
	}
	return names
}
