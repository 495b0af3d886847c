package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/storage"
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

// RefreshLockPrefix starts the name of the store lock (vault.Store.WithLock)
// a refresh holds: RefreshLockPrefix + tenant id + ":" + secret id.
const RefreshLockPrefix = "oauth-refresh:"

// RefreshLockName is the name of the store lock the refresh of a secret
// holds.
func RefreshLockName(tenantID, secretID string) string {
	return RefreshLockPrefix + tenantID + ":" + secretID
}

// refreshLockWait bounds the wait for the refresh lock (another replica's
// refresh of the same secret, its token request included).
const refreshLockWait = defaultHTTPTime + 5*time.Second

// storeAttempts is how many times a refreshed token is offered to the
// store, still under the lock, before the refresh fails: the provider may
// have rotated the refresh token already, and the new one exists nowhere
// else.
var storeAttempts = []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond}

// Refresh returns a live access token for sec (an oauth_token secret of
// this service): when the stored one is within RefreshWindow of expiry it
// is refreshed at the provider with the secret's refresh token and the
// tenant's override (or the operator's app), and the new tokens are stored
// as a new version. It returns the secret's metadata as stored and the
// token.
//
// One refresh of a secret runs at a time in the whole cluster, because a
// provider that rotates refresh tokens makes a second refresh with the
// same refresh token fatal (it refuses the old token, and may revoke the
// new one with it):
//   - in this process, concurrent callers share one refresh (single
//     flight), and a failed refresh is not retried before its back-off;
//   - that refresh holds the store's lock RefreshLockName(tenant, secret)
//     (vault.Store.WithLock: a PostgreSQL advisory lock held by one
//     replica at a time; a mutex of the process on the embedded store)
//     from reading the stored secret until the new tokens are stored;
//   - under the lock it reads the secret again, and a token that another
//     replica (or an earlier refresh) renewed already, one that needs no
//     refresh or a version newer than sec's that has not expired, is
//     returned without calling the provider;
//   - a lock lost before the token request (its database session ended)
//     stops the refresh: another replica may hold it by then.
func (s *Service) Refresh(ctx context.Context, sec vault.Secret) (vault.Secret, vault.Value, error) {
	type result struct {
		sec vault.Secret
		v   vault.Value
	}
	ch := s.sf.DoChan(sec.TenantID+"\x00"+sec.ID, func() (any, error) {
		// Shared by every caller: not bound to the first one's request.
		cur, v, err := s.refresh(context.WithoutCancel(ctx), sec.TenantID, sec.ID, sec.Version)
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

// storedToken is an oauth_token secret as stored: its metadata, access
// token and refresh token.
type storedToken struct {
	sec       vault.Secret
	value, rt vault.Value
}

func (s *Service) load(tenantID, id string) (storedToken, error) {
	var st storedToken
	err := s.store.Read(func(rd *vault.Reader) error {
		var err error
		if st.sec, err = rd.Secret(tenantID, id); err != nil {
			return err
		}
		st.value, st.rt, st.sec.Version, err = rd.OpenValue(tenantID, id)
		return err
	})
	if err != nil {
		return storedToken{}, fmt.Errorf("%w: %v", ErrRefresh, err)
	}
	if st.sec.Disabled {
		return storedToken{}, fmt.Errorf("%w: the secret is disabled", ErrRefresh)
	}
	return st, nil
}

// current reports whether the stored token is used as it is: it needs no
// refresh, or it is a version newer than the caller's (seen) that has not
// expired, renewed meanwhile (by another replica, or an earlier refresh)
// yet within its window already: a token whose lifetime is shorter than
// ShortRefreshWindow is refreshed once by the callers that saw it
// expiring, not once each.
func (s *Service) current(sec vault.Secret, seen int) bool {
	now := s.cfg.Now()
	if !NeedsRefresh(sec, now) {
		return true
	}
	return sec.Version > seen && sec.ExpiresAt != nil && sec.ExpiresAt.After(now)
}

// refresh renews the secret unless its stored token is current; seen is
// the version the caller had.
func (s *Service) refresh(ctx context.Context, tenantID, id string, seen int) (vault.Secret, vault.Value, error) {
	// Without the lock first: a token renewed already is used as it is,
	// and a refresh that would be refused anyway (not refreshable, backed
	// off) takes no lock.
	st, err := s.load(tenantID, id)
	if err != nil {
		return vault.Secret{}, vault.Value{}, err
	}
	if s.current(st.sec, seen) {
		return st.sec, st.value, nil
	}
	if _, _, err := s.prepare(st); err != nil {
		return vault.Secret{}, vault.Value{}, err
	}
	var out vault.Secret
	var v vault.Value
	wctx, cancel := context.WithTimeout(ctx, refreshLockWait)
	defer cancel()
	err = s.store.WithLock(wctx, RefreshLockName(tenantID, id), func(lctx context.Context) error {
		st, err := s.load(tenantID, id) // again, under the lock
		if err != nil {
			return err
		}
		if s.current(st.sec, seen) {
			s.log.Debug("oauth token renewed elsewhere; not refreshed", "tenant", tenantID, "secret", id, "version", st.sec.Version)
			out, v = st.sec, st.value
			return nil
		}
		out, v, err = s.renew(ctx, lctx, st)
		return err
	})
	switch {
	case err == nil:
		return out, v, nil
	case errors.Is(err, ErrRefresh):
		return vault.Secret{}, vault.Value{}, err
	}
	s.log.Warn("oauth refresh lock failed", "tenant", tenantID, "secret", id, "err", err.Error())
	return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: waiting for the refresh lock: %v", ErrRefresh, err)
}

// prepare checks that st can be refreshed and returns its provider and the
// app that issued it.
func (s *Service) prepare(st storedToken) (*Provider, app, error) {
	tenantID, id, cur := st.sec.TenantID, st.sec.ID, st.sec
	marker, ok := cur.Metadata[ClientMetadataKey]
	if !ok {
		return nil, app{}, fmt.Errorf("%w: the secret was not stored by an OAuth connect (no %s); it is not refreshed: connect again", ErrRefresh, ClientMetadataKey)
	}
	if err := s.backoff.check(tenantID, id, cur.Version, s.cfg.Now()); err != nil {
		return nil, app{}, err
	}
	name := cur.Metadata[MetadataKey]
	p, err := s.cat.Get(name)
	if err != nil {
		return nil, app{}, fmt.Errorf("%w: provider %q is not configured", ErrRefresh, name)
	}
	if st.rt.IsZero() {
		return nil, app{}, fmt.Errorf("%w: the secret has no refresh token; connect again", ErrRefresh)
	}
	a, err := s.issuingApp(tenantID, p, marker)
	if err != nil {
		return nil, app{}, fmt.Errorf("%w: %v", ErrRefresh, err)
	}
	return p, a, nil
}

// renew refreshes st at its provider and stores the new tokens; it runs
// under the refresh lock, whose context is lctx.
func (s *Service) renew(ctx, lctx context.Context, st storedToken) (vault.Secret, vault.Value, error) {
	tenantID, id, cur, rt := st.sec.TenantID, st.sec.ID, st.sec, st.rt
	p, a, err := s.prepare(st)
	if err != nil {
		return vault.Secret{}, vault.Value{}, err
	}
	if s.beforeTokenRequest != nil {
		s.beforeTokenRequest(lctx)
	}
	// The last moment to stop: once the request is sent, its answer is
	// stored whatever happens to the lock (it may carry the only valid
	// refresh token).
	if errors.Is(context.Cause(lctx), storage.ErrLockLost) {
		s.log.Warn("oauth refresh lock lost before the token request; not refreshed", "tenant", tenantID, "secret", id, "provider", p.Name)
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: the refresh lock was lost before the token request (its database connection ended); retry", ErrRefresh)
	}
	hctx, cancel := context.WithTimeout(ctx, defaultHTTPTime)
	defer cancel()
	hctx = context.WithValue(hctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	tok, err := s.config(p, a, "").TokenSource(hctx, &oauth2.Token{RefreshToken: string(rt.Reveal())}).Token()
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
	var out vault.Secret
	for _, d := range storeAttempts {
		time.Sleep(d)
		out, err = s.store.As(refreshActor).WithAudit(vault.ActionOAuthRefreshed, map[string]string{"provider": p.Name}).RotateSecret(tenantID, id, in)
		if err == nil || errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrInvalid) {
			break
		}
	}
	if err != nil {
		msg := redactTokens(err.Error(), tok)
		s.log.Error("oauth refresh: the new token could not be stored", "tenant", tenantID, "secret", id, "provider", p.Name, "err", msg)
		return vault.Secret{}, vault.Value{}, fmt.Errorf("%w: storing the new token: %s", ErrRefresh, msg)
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
