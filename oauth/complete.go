package oauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/egressd/egressd/vault"
)

// By is who presents a code and state to Complete: a tenant (TenantID and
// the end-user it asserts) or egressd's callback (the browser's connect
// cookies by flow id).
type By = vault.ClaimBy

// CompleteError is a completion that failed: Flow is the flow it failed
// (zero for an unknown state), Err the reason (ErrExchange,
// vault.ErrStateUsed, vault.ErrStateExpired, vault.ErrUnknownState, ...).
type CompleteError struct {
	Flow vault.OAuthFlow
	Err  error
}

func (e *CompleteError) Error() string { return e.Err.Error() }
func (e *CompleteError) Unwrap() error { return e.Err }

// ProviderError is what a provider's redirect says when the user denied
// access or the provider failed (error, error_description).
type ProviderError struct{ Code, Description string }

// Error says what the provider answered, cut short and without control
// characters: the redirect's query is anyone's input, and the text is
// stored on the flow and logged.
func (e ProviderError) Error() string {
	code := printable(truncate(e.Code, 64))
	if e.Description == "" {
		return "the provider answered " + code
	}
	return "the provider answered " + code + ": " + printable(truncate(e.Description, 200))
}

// printable drops control characters (line breaks would forge log lines).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
}

// Complete finishes the flow that state belongs to: it consumes the state
// (single use), exchanges code at the provider (with the flow's PKCE
// verifier) and stores the tokens as one oauth_token secret with the
// flow's scope and attribution (connecting again replaces it), in the name
// of the flow's actor with an oauth.completed audit row. The flow is then
// completed with the secret id. A reused, expired or unknown state or a
// provider error fails (reuse: refuses) and stores nothing. With provErr
// set (the provider redirected with an error), the flow fails with it.
// by says who presents the state (By): a tenant forwarding code and state
// from its own callback, asserting its session's end-user (a state of
// another tenant is unknown; another end-user is vault.ErrWrongUser), or
// egressd's callback with the browser's connect cookies (another browser
// is vault.ErrWrongBrowser). A refused presenter leaves the flow pending
// and its state unclaimed.
func (s *Service) Complete(ctx context.Context, by By, code, state string, provErr *ProviderError) (vault.OAuthFlow, error) {
	if state == "" {
		return vault.OAuthFlow{}, &CompleteError{Err: fmt.Errorf("%w: state: required", ErrInvalid)}
	}
	f, verifier, err := s.store.ClaimOAuthState(state, by)
	if err != nil {
		if errors.Is(err, vault.ErrStateExpired) {
			s.notify(f.TenantID, f.ID)
		}
		s.log.Warn("oauth completion refused", "flow", f.ID, "err", err.Error())
		return f, &CompleteError{Flow: f, Err: err}
	}
	fail := func(cause error, msg string) (vault.OAuthFlow, error) {
		nf, ferr := s.store.FinishOAuthFlow(f.TenantID, f.ID, vault.FlowFailed, "", msg)
		if ferr == nil {
			f = nf
		}
		s.notify(f.TenantID, f.ID)
		s.log.Warn("oauth flow failed", "tenant", f.TenantID, "flow", f.ID, "provider", f.Provider, "reason", msg)
		return f, &CompleteError{Flow: f, Err: fmt.Errorf("%w: %s", cause, msg)}
	}
	if provErr != nil {
		return fail(ErrExchange, provErr.Error())
	}
	if code == "" {
		return fail(ErrInvalid, "code: required")
	}
	p, err := s.cat.Get(f.Provider)
	if err != nil {
		return fail(ErrUnknownProvider, fmt.Sprintf("provider %q is no longer configured", f.Provider))
	}
	a, err := s.flowApp(f, p)
	if err != nil {
		return fail(ErrNotConfigured, err.Error())
	}
	opts := []oauth2.AuthCodeOption{}
	if !verifier.IsZero() {
		opts = append(opts, oauth2.VerifierOption(string(verifier.Reveal())))
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient), defaultHTTPTime)
	defer cancel()
	tok, err := s.config(p, a, f.RedirectURI).Exchange(xctx, code, opts...)
	if err != nil {
		return fail(ErrExchange, exchangeMessage(err, code, string(verifier.Reveal()), string(a.secret.Reveal())))
	}
	if tok.AccessToken == "" {
		return fail(ErrExchange, "the provider answered no access token")
	}
	in := secretInput(p, f)
	in.Value, in.RefreshToken = tok.AccessToken, tok.RefreshToken
	in.Metadata[ClientMetadataKey] = a.marker()
	if !tok.Expiry.IsZero() {
		exp := tok.Expiry.UTC()
		in.ExpiresAt = &exp
	}
	res, err := s.storeConnected(ctx, f, p, in)
	if err != nil {
		return fail(err, "the token could not be stored: "+redactTokens(err.Error(), tok))
	}
	nf, err := s.store.FinishOAuthFlow(f.TenantID, f.ID, vault.FlowCompleted, res.Secret.ID, "")
	if err != nil {
		return f, err
	}
	s.notify(f.TenantID, f.ID)
	s.log.Info("oauth flow completed", "tenant", f.TenantID, "flow", f.ID, "provider", p.Name, "secret", res.Secret.ID,
		"has_refresh_token", res.Secret.HasRefreshToken)
	return nf, nil
}

// storeConnected stores the tokens of a completed flow as its secret.
// Connecting an account again replaces a secret that a refresh may be
// renewing right now: that refresh stores its tokens (of the grant being
// replaced) as a new version when its token request answers. So the
// upsert of an existing secret holds the secret's refresh lock, as a
// refresh does: it waits for a refresh under way, and a refresh after it
// finds this version (newer than the one it saw, and live) and uses it.
// The connect's tokens are the last stored.
func (s *Service) storeConnected(ctx context.Context, f vault.OAuthFlow, p *Provider, in vault.SecretInput) (vault.UpsertResult, error) {
	upsert := func() (vault.UpsertResult, error) {
		return s.store.As(f.Actor).WithAudit(vault.ActionOAuthCompleted, map[string]string{"provider": p.Name, "flow_id": f.ID}).UpsertSecret(f.TenantID, in)
	}
	owner := (&vault.Secret{Scope: in.Scope, OwnerUserID: in.OwnerUserID, ExternalUserID: in.ExternalUserID, ExternalWorkspaceID: in.ExternalWorkspaceID,
		WorkspaceID: in.WorkspaceID, ResourceType: in.ResourceType, ResourceID: in.ResourceID}).ScopeOwner()
	var id string
	if err := s.store.Read(func(rd *vault.Reader) error {
		if cur, err := rd.SecretAt(f.TenantID, in.Scope, owner, in.Name); err == nil {
			id = cur.ID
		}
		return nil
	}); err != nil {
		return vault.UpsertResult{}, err
	}
	if id == "" {
		return upsert() // a new secret: nothing refreshes it yet
	}
	var res vault.UpsertResult
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshLockWait)
	defer cancel()
	err := s.store.WithLock(wctx, RefreshLockName(f.TenantID, id), func(context.Context) error {
		var err error
		res, err = upsert()
		return err
	})
	return res, err
}

// secretInput is the secret flow f of provider p stores, without its
// tokens and expiry.
func secretInput(p *Provider, f vault.OAuthFlow) vault.SecretInput {
	return vault.SecretInput{
		Name: f.SecretName, Type: SecretType, Scope: f.Scope,
		OwnerUserID: f.OwnerUserID, WorkspaceID: f.WorkspaceID, ExternalUserID: f.ExternalUserID,
		ExternalWorkspaceID: f.ExternalWorkspaceID, ExposeAsEnv: f.ExposeAsEnv,
		AllowedHosts: p.AllowedHosts, PlaceholderPrefix: p.PlaceholderPrefix,
		Metadata:   map[string]string{MetadataKey: p.Name},
		ResourceID: f.ResourceID, ResourceType: f.ResourceType,
	}
}

// marker is what ClientMetadataKey says of a.
func (a app) marker() string {
	if a.override {
		return "override:" + a.clientID
	}
	return "operator:" + a.clientID
}

// issuingApp is the app that issued the token of a secret marked m (its
// ClientMetadataKey): the tenant's override or the operator's app, as
// long as it still has the client id that issued the token.
func (s *Service) issuingApp(tenantID string, p *Provider, m string) (app, error) {
	kind, clientID, _ := strings.Cut(m, ":")
	switch kind {
	case "override":
		o, err := s.store.OAuthOverride(tenantID, p.Name)
		if errors.Is(err, vault.ErrNotFound) || (err == nil && o.ClientID != clientID) {
			return app{}, fmt.Errorf("the tenant's %q app that issued this token (client %q) is no longer configured; connect again", p.Name, clientID)
		}
		if err != nil {
			return app{}, err
		}
		sec, err := s.store.OAuthOverrideSecret(tenantID, p.Name)
		if err != nil {
			return app{}, err
		}
		return app{clientID: o.ClientID, secret: sec, override: true}, nil
	case "operator":
		if p.clientID == "" || p.clientID != clientID {
			return app{}, fmt.Errorf("the operator's %q app that issued this token (client %q) is no longer configured; connect again", p.Name, clientID)
		}
		return app{clientID: p.clientID, secret: p.clientSecret}, nil
	}
	return app{}, fmt.Errorf("the secret's %s %q names no app", ClientMetadataKey, m)
}

// flowApp is the client a flow was started with.
func (s *Service) flowApp(f vault.OAuthFlow, p *Provider) (app, error) {
	if f.Override {
		o, err := s.store.OAuthOverride(f.TenantID, p.Name)
		if err != nil {
			return app{}, fmt.Errorf("the tenant override for %q was removed during the flow", p.Name)
		}
		sec, err := s.store.OAuthOverrideSecret(f.TenantID, p.Name)
		if err != nil {
			return app{}, err
		}
		return app{clientID: o.ClientID, secret: sec, override: true}, nil
	}
	if p.clientID == "" {
		return app{}, fmt.Errorf("%q has no client_id configured", p.Name)
	}
	return app{clientID: p.clientID, secret: p.clientSecret}, nil
}

// exchangeMessage says why a token request failed, in the provider's
// error code and description only (never the body, which could hold a
// token). sent are the secrets the request carried (the code or refresh
// token, the PKCE verifier, the client secret): a provider that echoes one
// in its description has it cut out, before the text is cut short.
func exchangeMessage(err error, sent ...string) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := fmt.Sprintf("the provider refused the token request (HTTP %d)", re.Response.StatusCode)
		if re.ErrorCode != "" {
			msg += ": " + printable(truncate(redact(re.ErrorCode, sent...), 64))
			if re.ErrorDescription != "" {
				msg += " (" + printable(truncate(redact(re.ErrorDescription, sent...), 200)) + ")"
			}
		}
		return msg
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the provider's token endpoint did not answer in time"
	}
	return "the provider's token endpoint could not be reached"
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// redactTokens cuts the token values out of a message.
func redactTokens(msg string, tok *oauth2.Token) string {
	return redact(msg, tok.AccessToken, tok.RefreshToken)
}

// redact cuts the values (those of 4 bytes or more) out of a message.
func redact(msg string, values ...string) string {
	for _, v := range values {
		if len(v) >= 4 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}
