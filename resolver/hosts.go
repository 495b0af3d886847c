package resolver

import (
	"context"
	"slices"
	"time"

	"github.com/egressd/egressd/vault"
)

// hostSummary is what a sandbox's resolvable secrets allow: for each, its
// allowed_hosts and whether it may be substituted in a body.
type hostSummary struct {
	secrets []hostRule
	token   TokenState
	gen     uint64
	tgen    interface{ Load() uint64 }
	expires int64
}

type hostRule struct {
	patterns []string
	body     bool
}

// HostUse says what the secrets that resolve for a sandbox may do on a host.
type HostUse struct {
	// Any: at least one may be used on the host. The proxy terminates TLS
	// only where this is true and tunnels every other host untouched.
	Any bool
	// Body: at least one may be used on the host and opts into bodies. When
	// false the proxy passes request bodies through without a copy.
	Body bool
	// Token is the sandbox's proxy token as stored now.
	Token TokenState
}

// TokenState is when a sandbox's current proxy token was issued and when
// it expires (zero: never). A connection authenticated before TokenIssued
// used a token that was since replaced.
type TokenState struct {
	Issued, Expires time.Time
}

// Valid reports whether a connection authenticated with a token issued at
// issued may go on at now.
func (t TokenState) Valid(issued, now time.Time) bool {
	return issued.Equal(t.Issued) && (t.Expires.IsZero() || now.Before(t.Expires))
}

func (s *hostSummary) use(host string) HostUse {
	u := HostUse{Token: s.token}
	for _, h := range s.secrets {
		if vault.HostAllowed(h.patterns, host) {
			u.Any = true
			u.Body = u.Body || h.body
		}
	}
	return u
}

// MayUse reports what the sandbox's resolvable secrets may do on host. A
// deleted sandbox answers ErrUnknownSandbox once the delete has returned.
// While Config.Fresh is false it reads the vault on every call.
func (r *Resolver) MayUse(ctx context.Context, sandboxID, host string) (HostUse, error) {
	if r.fresh() {
		if v, ok := r.hosts.Get(sandboxID); ok && v.tgen.Load() == v.gen && r.now().UnixNano() < v.expires {
			return v.use(host), nil
		}
	}
	if err := ctx.Err(); err != nil {
		return HostUse{}, err
	}
	tenantID, err := r.tenantOf(sandboxID)
	if err != nil {
		return HostUse{}, err
	}
	tg := r.gen(tenantID)
	sum := &hostSummary{gen: tg.Load(), tgen: tg}
	err = r.readSandbox(tenantID, sandboxID, func(rd *vault.Reader, sbx *vault.Sandbox, t *vault.Tenant) error {
		sum.token.Issued = sbx.TokenIssuedAt
		if sbx.TokenExpiresAt != nil {
			sum.token.Expires = *sbx.TokenExpiresAt
		}
		for name := range candidateNames(rd, sbx) {
			win, _, _, _, err := walk(rd, t, sbx, name, false)
			if err != nil {
				return err
			}
			if win != nil {
				sum.secrets = append(sum.secrets, hostRule{patterns: win.AllowedHosts, body: slices.Contains(win.SubstituteIn, vault.InBody)})
			}
		}
		return nil
	})
	if err != nil {
		return HostUse{}, err
	}
	sum.expires = r.now().Add(r.ttl).UnixNano()
	r.hosts.Add(sandboxID, sum)
	return sum.use(host), nil
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
