package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/egressd/egressd/vault"
)

// Defaults of Config.
const (
	DefaultFlowTTL = 10 * time.Minute
	CallbackPath   = "/api/v1/egress/oauth/callback"
	// ConnectPath + flow id is a flow's connect link (public): its page's
	// button binds the flow to the browser that presses it first and
	// sends it on to the provider (connect.go).
	ConnectPath = "/connect/"
	// CookiePrefix + flow id names the connect cookie (its nonce).
	CookiePrefix = "egressd_oauth_"
	MetadataKey  = "oauth_provider"
	// ClientMetadataKey marks an oauth_token secret stored by a completed
	// flow with the app that issued it ("operator:<client id>" or
	// "override:<client id>"); refresh uses that app. The secrets API
	// refuses metadata keys starting with ReservedMetadataPrefix, so only
	// this package sets it.
	ClientMetadataKey      = "oauth_client"
	ReservedMetadataPrefix = vault.ReservedMetadataPrefix
	SecretType             = "oauth_token"
	defaultHTTPTime        = 30 * time.Second
)

// Config configures New.
type Config struct {
	// Store holds flows, overrides and the secrets. Required.
	Store *vault.Store
	// Catalogue is the providers; nil means the built-in ones only.
	Catalogue *Catalogue
	// PublicURL is the base URL the provider redirects browsers to
	// (PublicURL + CallbackPath), such as "https://egressd.example.com".
	// Empty means flows need a redirect_uri or an override callback_url.
	PublicURL string
	// HTTPClient talks to the providers' token endpoints; nil means a
	// client with a 30 s timeout, a dedicated transport that ignores the
	// environment's proxy settings (HTTPS_PROXY) and no redirects followed
	// (a token request's client_secret, code and verifier are never
	// replayed to another URL).
	HTTPClient *http.Client
	// FlowTTL is how long a flow's state is good; zero means 10 minutes.
	FlowTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives a line per flow outcome and refresh; nil discards.
	// Never a token.
	Logger *slog.Logger
}

// Service runs connect flows and refreshes tokens. It is safe for
// concurrent use.
type Service struct {
	cfg   Config
	store *vault.Store
	cat   *Catalogue
	log   *slog.Logger
	sf    singleflight.Group

	backoff refreshBackoff
	// beforeTokenRequest, when set (tests), runs under the refresh lock
	// just before the check that the lock is still held and the token
	// request.
	beforeTokenRequest func(lctx context.Context)

	mu      sync.Mutex
	waiters map[string]*waiter // tenant \0 flow id → its long-polls
	nwait   int                // long-polls under way, all flows
}

// waiter is the long-polls of one flow: ch is closed at the flow's next
// change, n counts the polls (the entry goes when the last one leaves).
type waiter struct {
	ch chan struct{}
	n  int
}

// MaxWaiters caps the long-polls (GET /flows/{id}?wait=) under way at
// once, over all tenants; one more is refused with ErrTooManyWaiters.
const MaxWaiters = 1000

// New checks cfg and builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("oauth: no store")
	}
	if cfg.Catalogue == nil {
		c, err := NewCatalogue("")
		if err != nil {
			return nil, err
		}
		cfg.Catalogue = c
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("oauth: PublicURL %q: want http(s)://host[:port]", cfg.PublicURL)
		}
		cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newTokenClient()
	}
	if cfg.FlowTTL == 0 {
		cfg.FlowTTL = DefaultFlowTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, store: cfg.Store.WithReservedMetadata(), cat: cfg.Catalogue, log: cfg.Logger, waiters: map[string]*waiter{}}, nil
}

// Catalogue is the service's providers.
func (s *Service) Catalogue() *Catalogue { return s.cat }

// StartInput is what a connect asks for: the provider, and what the
// secret it stores will be (name, scope and its owner ids, env var,
// binding).
type StartInput struct {
	Provider            string             `json:"provider"`
	Name                string             `json:"name"`
	ExposeAsEnv         string             `json:"expose_as_env"`
	Scope               vault.Scope        `json:"scope"`
	Scopes              []string           `json:"scopes"`
	OwnerUserID         string             `json:"owner_user_id"`
	WorkspaceID         string             `json:"workspace_id"`
	ExternalUserID      string             `json:"external_user_id"`
	ExternalWorkspaceID string             `json:"external_workspace_id"`
	ResourceID          string             `json:"resource_id"`
	ResourceType        vault.ResourceType `json:"resource_type"`
	RedirectURI         string             `json:"redirect_uri"`
}

// Started is a new flow and the URL to send the user's browser to: for a
// flow on egressd's own callback its connect link (PublicURL + ConnectPath
// + id; the provider's URL is sealed on the flow and only the browser that
// presses the link's button first is sent there), else the provider's authorize URL
// (the tenant's own callback binds its session: it asserts the end-user
// on POST /oauth/complete).
type Started struct {
	Flow         vault.OAuthFlow
	AuthorizeURL string
	State        string
}

// app is the client a flow or refresh uses: the tenant's override or the
// operator's default.
type app struct {
	clientID, callback string
	secret             vault.Value
	override           bool
}

func (s *Service) app(tenantID string, p *Provider) (app, error) {
	o, err := s.store.OAuthOverride(tenantID, p.Name)
	switch {
	case err == nil:
		sec, err := s.store.OAuthOverrideSecret(tenantID, p.Name)
		if err != nil {
			return app{}, err
		}
		return app{clientID: o.ClientID, callback: o.CallbackURL, secret: sec, override: true}, nil
	case !errors.Is(err, vault.ErrNotFound):
		return app{}, err
	}
	if p.clientID == "" {
		return app{}, fmt.Errorf("%w: %q has no client_id: set one in the providers file (--oauth-providers) or a tenant override", ErrNotConfigured, p.Name)
	}
	return app{clientID: p.clientID, secret: p.clientSecret}, nil
}

func (s *Service) config(p *Provider, a app, redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: a.clientID, ClientSecret: string(a.secret.Reveal()), Endpoint: p.endpoint(), RedirectURL: redirect}
}

// Start begins a flow for the tenant, in the name of actor (who the stored
// secret's audit row will name).
func (s *Service) Start(ctx context.Context, actor vault.Actor, tenantID string, in StartInput) (Started, error) {
	p, err := s.cat.Get(in.Provider)
	if err != nil {
		return Started{}, err
	}
	if err := s.checkStart(p, &in); err != nil {
		return Started{}, err
	}
	flow := vault.OAuthFlow{
		Provider: p.Name, SecretName: in.Name, Scope: in.Scope, ExposeAsEnv: in.ExposeAsEnv,
		OwnerUserID: in.OwnerUserID, WorkspaceID: in.WorkspaceID, ExternalUserID: in.ExternalUserID,
		ExternalWorkspaceID: in.ExternalWorkspaceID, ResourceID: in.ResourceID, ResourceType: in.ResourceType,
	}
	// What Complete will store, checked now rather than after consent.
	if err := s.store.CheckSecretInput(tenantID, secretInput(p, flow)); err != nil {
		return Started{}, err
	}
	a, err := s.app(tenantID, p)
	if err != nil {
		return Started{}, err
	}
	redirect, err := s.redirect(a, in.RedirectURI)
	if err != nil {
		return Started{}, err
	}
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = p.Scopes
	}
	state := randomString(32)
	verifier := ""
	if p.PKCE {
		verifier = oauth2.GenerateVerifier()
	}
	opts := []oauth2.AuthCodeOption{}
	if len(scopes) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("scope", joinScopes(p, scopes)))
	}
	for k, v := range p.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	u := s.config(p, app{clientID: a.clientID}, redirect).AuthCodeURL(state, opts...)
	sealed := ""
	if s.cfg.PublicURL != "" && redirect == s.cfg.PublicURL+CallbackPath {
		sealed = u
	}
	flow.Scopes, flow.RedirectURI, flow.ClientID, flow.Override, flow.Actor = scopes, redirect, a.clientID, a.override, actor
	flow.ExpiresAt = s.cfg.Now().Add(s.cfg.FlowTTL).UTC()
	f, err := s.store.CreateOAuthFlow(tenantID, vault.OAuthFlowInput{State: state, Verifier: verifier, AuthorizeURL: sealed, Flow: flow})
	if err != nil {
		return Started{}, err
	}
	if sealed != "" {
		u = s.cfg.PublicURL + ConnectPath + f.ID
	}
	s.log.Info("oauth flow started", "tenant", tenantID, "flow", f.ID, "provider", p.Name, "override", a.override)
	return Started{Flow: f, AuthorizeURL: u, State: state}, nil
}

// redirect is the redirect URI of a flow with app a: asked for (given) or
// the default (the override's callback_url, else egressd's own callback).
// With the operator's app only egressd's own callback is allowed; with a
// tenant override, the override's callback_url or egressd's own. Any but
// egressd's own (operator-configured) must be https, or http on a
// loopback host (127.0.0.1, ::1, localhost).
func (s *Service) redirect(a app, given string) (string, error) {
	own := ""
	if s.cfg.PublicURL != "" {
		own = s.cfg.PublicURL + CallbackPath
	}
	redirect := given
	if redirect == "" && a.override {
		redirect = a.callback
	}
	if redirect == "" {
		if own == "" {
			return "", fmt.Errorf("%w: redirect_uri: required (this server has no public URL)", ErrInvalid)
		}
		return own, nil
	}
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: redirect_uri: want an absolute http(s) URL", ErrInvalid)
	}
	if redirect == own {
		return redirect, nil
	}
	if !a.override || redirect != a.callback {
		if a.override {
			return "", fmt.Errorf("%w: redirect_uri: with the tenant's app only its callback_url or egressd's own callback is allowed", ErrInvalid)
		}
		return "", fmt.Errorf("%w: redirect_uri: with the operator's app only egressd's own callback is allowed (%s)", ErrInvalid, own)
	}
	if u.Scheme != "https" && !loopback(u.Hostname()) {
		return "", fmt.Errorf("%w: redirect_uri: must be https (http only on a loopback host)", ErrInvalid)
	}
	return redirect, nil
}

// loopback reports whether host is 127.0.0.1, ::1 or localhost.
func loopback(host string) bool {
	return host == "127.0.0.1" || host == "::1" || strings.EqualFold(host, "localhost")
}

// checkStart fills in the defaults of a connect and refuses what the
// secret could not be stored as.
func (s *Service) checkStart(p *Provider, in *StartInput) error {
	if in.ResourceID != "" && in.ResourceType == "" {
		in.ResourceType = vault.ResourceSandbox
	}
	if in.Scope == "" {
		switch {
		case in.ExternalUserID != "":
			in.Scope = vault.ScopeExternalUser
		case in.OwnerUserID != "":
			in.Scope = vault.ScopeUser
		case in.ExternalWorkspaceID != "":
			in.Scope = vault.ScopeExternalWorkspace
		case in.WorkspaceID != "":
			in.Scope = vault.ScopeWorkspace
		case in.ResourceID != "":
			in.Scope = vault.ScopeResource
		default:
			in.Scope = vault.ScopeTenant
		}
	}
	if !in.Scope.Valid() {
		return fmt.Errorf("%w: scope: unknown scope %q (want one of %v)", ErrInvalid, in.Scope, vault.Scopes)
	}
	owner := map[vault.Scope]struct{ field, v string }{
		vault.ScopeUser: {"owner_user_id", in.OwnerUserID}, vault.ScopeExternalUser: {"external_user_id", in.ExternalUserID},
		vault.ScopeExternalWorkspace: {"external_workspace_id", in.ExternalWorkspaceID}, vault.ScopeWorkspace: {"workspace_id", in.WorkspaceID},
		vault.ScopeResource: {"resource_id", in.ResourceID},
	}
	if o, ok := owner[in.Scope]; ok && o.v == "" {
		return fmt.Errorf("%w: %s: required for scope %s", ErrInvalid, o.field, in.Scope)
	}
	if in.ExposeAsEnv == "" {
		in.ExposeAsEnv = strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(p.Name)) + "_TOKEN"
		if !vault.ValidEnvName(in.ExposeAsEnv) {
			in.ExposeAsEnv = "OAUTH_TOKEN"
		}
	}
	if !vault.ValidEnvName(in.ExposeAsEnv) {
		return fmt.Errorf("%w: expose_as_env: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)", ErrInvalid)
	}
	if in.Name == "" {
		in.Name = in.ExposeAsEnv
	}
	if !vault.ValidName(in.Name) {
		return fmt.Errorf("%w: name: must match [A-Za-z0-9_.-]{1,128}", ErrInvalid)
	}
	if len(in.Scopes) > 64 {
		return fmt.Errorf("%w: scopes: at most 64", ErrInvalid)
	}
	for _, sc := range in.Scopes {
		if sc == "" || len(sc) > 256 || strings.ContainsAny(sc, " \t\r\n") {
			return fmt.Errorf("%w: scopes: each 1 to 256 characters without spaces", ErrInvalid)
		}
	}
	return nil
}

// Flow returns one flow of the tenant; a pending one past its expiry is
// marked expired first.
func (s *Service) Flow(tenantID, id string) (vault.OAuthFlow, error) {
	before, err := s.store.OAuthFlow(tenantID, id)
	if err != nil {
		return before, err
	}
	f, err := s.store.ExpireOAuthFlow(tenantID, id)
	if err == nil && f.Status != before.Status {
		s.notify(tenantID, id)
	}
	return f, err
}

// Wait returns the flow once it is no longer pending, or when d (or ctx)
// ends, whichever is first; a pending flow is then returned as it is.
// Only a pending flow of the tenant is waited for (an unknown or finished
// one answers at once), and at most MaxWaiters polls wait at a time: one
// more answers ErrTooManyWaiters.
func (s *Service) Wait(ctx context.Context, tenantID, id string, d time.Duration) (vault.OAuthFlow, error) {
	f, err := s.Flow(tenantID, id)
	if err != nil || f.Status != vault.FlowPending || d <= 0 {
		return f, err
	}
	wk := waitKey(tenantID, id)
	if err := s.join(wk); err != nil {
		return f, err
	}
	defer s.leave(wk)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := s.watch(wk)
		f, err := s.Flow(tenantID, id)
		if err != nil || f.Status != vault.FlowPending {
			return f, err
		}
		// Wake at the flow's expiry too, to report it. A flow still
		// pending past it has its state claimed: its exchange notifies.
		var expC <-chan time.Time
		var exp *time.Timer
		if left := f.ExpiresAt.Sub(s.cfg.Now()); left > 0 {
			exp = time.NewTimer(left + 10*time.Millisecond)
			expC = exp.C
		}
		var timedOut, done bool
		select {
		case <-ch:
		case <-expC:
		case <-timer.C:
			timedOut = true
		case <-ctx.Done():
			done = true
		}
		if exp != nil {
			exp.Stop() // one timer per wake-up, not one per loop kept to the end
		}
		if timedOut {
			return s.Flow(tenantID, id)
		}
		if done {
			return f, nil
		}
	}
}

func waitKey(tenantID, id string) string { return tenantID + "\x00" + id }

// join counts a long-poll of the flow wk, or refuses it past MaxWaiters.
func (s *Service) join(wk string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nwait >= MaxWaiters {
		return fmt.Errorf("%w: %d flow polls are waiting already; retry later", ErrTooManyWaiters, MaxWaiters)
	}
	s.nwait++
	w, ok := s.waiters[wk]
	if !ok {
		w = &waiter{ch: make(chan struct{})}
		s.waiters[wk] = w
	}
	w.n++
	return nil
}

// leave ends a long-poll joined with join; the flow's entry goes with the
// last one.
func (s *Service) leave(wk string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nwait--
	if w, ok := s.waiters[wk]; ok {
		if w.n--; w.n <= 0 {
			delete(s.waiters, wk)
		}
	}
}

// watch returns a channel closed at the flow's next change; wk must have
// been joined.
func (s *Service) watch(wk string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.waiters[wk]; ok {
		return w.ch
	}
	return nil // not joined: never closed
}

// notify wakes the waiters of a flow.
func (s *Service) notify(tenantID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.waiters[waitKey(tenantID, id)]; ok {
		close(w.ch)
		w.ch = make(chan struct{})
	}
}

// newTokenClient is the default client of the token endpoints: its own
// transport (no proxy from the environment) and a redirect answered as
// it is, not followed.
func newTokenClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{
		Timeout:   defaultHTTPTime,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
