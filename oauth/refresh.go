package oauth

import (
	"context"
	"fmt"
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
	name := cur.Metadata[MetadataKey]
	p, err := s.cat.Get(name)
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: provider %q is not configured", ErrRefresh, name)
	}
	if rt.IsZero() {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the secret has no refresh token; connect again", ErrRefresh)
	}
	var a app
	if m, ok := cur.Metadata[ClientMetadataKey]; ok {
		a, err = s.issuingApp(tenantID, p, m)
	} else {
		a, err = s.app(tenantID, p)
	}
	if err != nil {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: %v", ErrRefresh, err)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	tok, err := s.config(p, a, "").TokenSource(ctx, &oauth2.Token{RefreshToken: string(rt.Reveal())}).Token()
	if err != nil {
		s.log.Warn("oauth refresh failed", "tenant", tenantID, "secret", id, "provider", p.Name, "reason", exchangeMessage(err))
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: %s", ErrRefresh, exchangeMessage(err))
	}
	if tok.AccessToken == "" {
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the provider answered no access token", ErrRefresh)
	}
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
