package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/egressd/egressd/vault"
)

// RefreshWindow is how close to its expiry a token is refreshed before use.
const RefreshWindow = 60 * time.Second

// ShortRefreshWindow replaces RefreshWindow for a token whose lifetime
// (from its version's store to its expiry) is RefreshWindow or less:
// such a token is used until it is within ShortRefreshWindow of expiry,
// so a provider issuing very short tokens does not make every request
// refresh.
const ShortRefreshWindow = 5 * time.Second

// DefaultLifetime is the expiry given to a refreshed token when the
// provider's answer has none (no expires_in): the token is refreshed
// again after it, neither never nor at every request.
const DefaultLifetime = time.Hour

// refreshActor is who refreshes are recorded as in the audit log.
var refreshActor = vault.Actor{Kind: vault.ActorOperator, ID: "egressd-oauth-refresh"}

// Refresh returns a live access token for sec (an oauth_token secret of
// this service): when the stored one is within RefreshWindow of expiry it
// is refreshed at the provider with the secret's refresh token and the
// tenant's override (or the operator's app), and the new tokens are stored
// as a new version. One refresh runs per secret at a time: concurrent
// callers share its result, and a caller that comes after another's
// refresh gets the stored token without a second one. It returns the
// secret's metadata as stored and the token.
func (s *Service) Refresh(ctx context.Context, sec vault.Secret) (vault.Secret, vault.Value, error) {
	type result struct {
		sec vault.Secret
		v   vault.Value
	}
	ch := s.sf.DoChan(sec.TenantID+"\x00"+sec.ID, func() (any, error) {
		// Shared by every caller: not bound to the first one's request.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultHTTPTime)
		defer cancel()
		cur, v, err := s.refresh(rctx, sec.TenantID, sec.ID)
		return result{cur, v}, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return vault.Secret{}, vault.Value{}, r.Err
		}
		res := r.Val.(result)
		return res.sec, res.v, nil
	case <-ctx.Done():
		return vault.Secret{}, vault.Value{}, ctx.Err()
	}
}

func (s *Service) refresh(ctx context.Context, tenantID, id string) (vault.Secret, vault.Value, error) {
	var cur vault.Secret
	var value, rt vault.Value
	err := s.store.Read(func(rd *vault.Reader) error {
		var err error
		if cur, err = rd.Secret(tenantID, id); err != nil {
			return err
		}
		value, rt, cur.Version, err = rd.OpenValue(tenantID, id)
		return err
	})
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: %v", ErrRefresh, err)
	}
	if cur.Disabled {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the secret is disabled", ErrRefresh)
	}
	if !NeedsRefresh(cur, s.cfg.Now()) {
		return cur, value, nil // refreshed by someone else already
	}
	marker, ok := cur.Metadata[ClientMetadataKey]
	if !ok {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the secret was not stored by an OAuth connect (no %s); it is not refreshed: connect again", ErrRefresh, ClientMetadataKey)
	}
	if err := s.backoff.check(tenantID, id, cur.Version, s.cfg.Now()); err != nil {
		return vault.Secret{}, vault.Value{}, err
	}
	name := cur.Metadata[MetadataKey]
	p, err := s.cat.Get(name)
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: provider %q is not configured", ErrRefresh, name)
	}
	if rt.IsZero() {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the secret has no refresh token; connect again", ErrRefresh)
	}
	a, err := s.issuingApp(tenantID, p, marker)
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: %v", ErrRefresh, err)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	tok, err := s.config(p, a, "").TokenSource(ctx, &oauth2.Token{RefreshToken: string(rt.Reveal())}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		dead := errors.As(err, &re) && re.ErrorCode == "invalid_grant"
		reason := exchangeMessage(err, string(rt.Reveal()), string(a.secret.Reveal()))
		s.backoff.failed(tenantID, id, cur.Version, s.cfg.Now(), reason, dead)
		s.log.Warn("oauth refresh failed", "tenant", tenantID, "secret", id, "provider", p.Name, "reason", reason, "final", dead)
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: %s", ErrRefresh, reason)
	}
	if tok.AccessToken == "" {
		s.backoff.failed(tenantID, id, cur.Version, s.cfg.Now(), "the provider answered no access token", false)
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the provider answered no access token", ErrRefresh)
	}
	s.backoff.succeeded(tenantID, id)
	in := vault.RotateInput{Value: tok.AccessToken}
	if tok.RefreshToken != "" && !rt.Equal([]byte(tok.RefreshToken)) {
		in.RefreshToken = tok.RefreshToken
	}
	exp := s.cfg.Now().Add(DefaultLifetime).UTC()
	if !tok.Expiry.IsZero() {
		exp = tok.Expiry.UTC()
	}
	in.ExpiresAt = &exp
	out, err := s.store.As(refreshActor).WithAudit(vault.ActionOAuthRefreshed, map[string]string{"provider": p.Name}).RotateSecret(tenantID, id, in)
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: storing the new token: %s", ErrRefresh, redactTokens(err.Error(), tok))
	}
	s.log.Info("oauth token refreshed", "tenant", tenantID, "secret", id, "provider", p.Name, "version", out.Version)
	return out, vault.NewValue([]byte(tok.AccessToken)), nil
}

// NeedsRefresh reports whether sec is an oauth_token whose access token
// expires within RefreshWindow of now; for a token whose lifetime (from
// the secret's last update, when this version was stored, to its expiry)
// is RefreshWindow or less, within ShortRefreshWindow.
func NeedsRefresh(sec vault.Secret, now time.Time) bool {
	if sec.Type != SecretType || sec.ExpiresAt == nil {
		return false
	}
	window := RefreshWindow
	if !sec.UpdatedAt.IsZero() && sec.ExpiresAt.Sub(sec.UpdatedAt) <= RefreshWindow {
		window = ShortRefreshWindow
	}
	return sec.ExpiresAt.Before(now.Add(window))
}

// Back-off of failed refreshes, per secret version.
const (
	refreshBackoffMin = time.Second
	refreshBackoffMax = 5 * time.Minute
)

// refreshBackoff remembers the failed refreshes of each secret: after a
// failure at the provider the next try waits 1 s, doubling to 5 min; a
// refresh token the provider answered invalid_grant for is not tried again
// until the secret is rotated (a new version: connecting again, or a
// refresh elsewhere). Requests in the meantime are refused at once with
// the last reason, without calling the provider.
type refreshBackoff struct {
	mu sync.Mutex
	m  map[string]*refreshFailure // tenant \0 secret id
}

type refreshFailure struct {
	version int
	fails   int
	until   time.Time
	dead    bool
	reason  string
}

func (b *refreshBackoff) check(tenantID, id string, version int, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	f, ok := b.m[tenantID+"\x00"+id]
	switch {
	case !ok:
		return nil
	case f.version != version:
		delete(b.m, tenantID+"\x00"+id) // rotated since: try again
		return nil
	case f.dead:
		return fmt.Errorf("%w: %s; the refresh token is no longer valid: connect again", ErrRefresh, f.reason)
	case now.Before(f.until):
		return fmt.Errorf("%w: %s; not tried again before %s", ErrRefresh, f.reason, f.until.UTC().Format(time.RFC3339))
	}
	return nil
}

func (b *refreshBackoff) failed(tenantID, id string, version int, now time.Time, reason string, dead bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*refreshFailure{}
	}
	k := tenantID + "\x00" + id
	f, ok := b.m[k]
	if !ok || f.version != version {
		f = &refreshFailure{version: version}
		b.m[k] = f
	}
	f.fails++
	d := refreshBackoffMax
	if f.fails <= 20 {
		d = min(refreshBackoffMin<<(f.fails-1), refreshBackoffMax)
	}
	f.until, f.dead, f.reason = now.Add(d), dead, reason
}

func (b *refreshBackoff) succeeded(tenantID, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, tenantID+"\x00"+id)
}
