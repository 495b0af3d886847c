package golden

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// ExternalConfig says how to reach a running egressd.
type ExternalConfig struct {
	// AdminURL is the admin API ("http://127.0.0.1:8081").
	AdminURL string
	// APIKey is a tenant admin key. The cases' secrets are stored in that
	// tenant and deleted afterwards: use a tenant kept for replays.
	APIKey string
	// OperatorKey, instead of APIKey, creates a throwaway tenant
	// "replay-<random>".
	OperatorKey string
	// ProxyURL is the proxy's address; empty: the proxy_url of the
	// sandbox creation answer.
	ProxyURL string
	// HostRewrite, if not empty, replaces every *.test name of a case by
	// this name (say "localhost", which the server's resolver sends to
	// loopback). Cases that need two different names are then skipped.
	HostRewrite string
	// UpstreamCADir holds the recording upstream's CA (created if
	// missing); the server must trust DIR/ca.pem (serve --upstream-ca).
	UpstreamCADir string
	// AuditWait is how long to poll the audit log for a request's row
	// (default 5s).
	AuditWait time.Duration
}

// External is a running egressd as a Target. Its cases run one at a time.
type External struct {
	cfg    ExternalConfig
	api    *client.Client
	up     *Upstream
	base   vault.Settings
	Tenant string // the tenant's name when External created it
}

// NewExternal starts the recording upstream on 127.0.0.1 and checks the
// API key (or creates the throwaway tenant).
func NewExternal(ctx context.Context, cfg ExternalConfig) (*External, error) {
	if cfg.AuditWait == 0 {
		cfg.AuditWait = 5 * time.Second
	}
	x := &External{cfg: cfg}
	key := cfg.APIKey
	if cfg.OperatorKey != "" {
		op, err := client.New(cfg.AdminURL, cfg.OperatorKey, client.WithUserAgent("egressd-replay"))
		if err != nil {
			return nil, err
		}
		b := make([]byte, 6)
		rand.Read(b)
		x.Tenant = "replay-" + hex.EncodeToString(b)
		t, err := op.CreateTenant(ctx, x.Tenant)
		if err != nil {
			return nil, fmt.Errorf("create tenant %s: %w", x.Tenant, err)
		}
		key = t.APIKey
	}
	if key == "" {
		return nil, errors.New("need a tenant admin key or the operator key")
	}
	var err error
	if x.api, err = client.New(cfg.AdminURL, key, client.WithUserAgent("egressd-replay")); err != nil {
		return nil, err
	}
	if x.base, err = x.api.GetSettings(ctx); err != nil {
		return nil, fmt.Errorf("tenant settings: %w", err)
	}
	if x.up, err = NewUpstream(cfg.UpstreamCADir); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	return x, nil
}

// UpstreamCA is the recording upstream's CA certificate, PEM.
func (x *External) UpstreamCA() []byte { return x.up.CA.CertPEM() }

// Close stops the upstream.
func (x *External) Close() { x.up.Close() }

// fakeDNS are the names whose answer only the in-process lookup gives.
var fakeDNS = map[string]bool{"private.test": true, "metadata.test": true}

var testName = regexp.MustCompile(`(?i)[a-z0-9*][a-z0-9.*-]*\.test\b`)

// Prepare returns the case as x runs it (its *.test names rewritten), or
// a *Skip when x cannot run it.
func (x *External) Prepare(c *Case) (*Case, error) {
	var names []string
	for _, s := range c.Archive.Sections {
		for _, n := range testName.FindAllString(string(s.Data), -1) {
			n = strings.ToLower(n)
			if fakeDNS[n] {
				return nil, &Skip{n + " needs a fake DNS answer for a private address (in-process runner only)"}
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if c.Request.ProxyAuth != "ok" && c.Audit != nil && !c.Audit.None {
		// A request refused before its sandbox is known has no tenant:
		// its row is in no tenant's log. Check the rest.
		cp := *c
		cp.Audit = nil
		c = &cp
	}
	if x.cfg.HostRewrite == "" || len(names) == 0 {
		return c, nil
	}
	if len(names) > 1 {
		return nil, &Skip{fmt.Sprintf("--host-rewrite %s would merge the names %s", x.cfg.HostRewrite, strings.Join(names, ", "))}
	}
	if strings.Contains(names[0], "*") {
		return nil, &Skip{fmt.Sprintf("--host-rewrite cannot rewrite the pattern %s", names[0])}
	}
	a := &Archive{Comment: c.Archive.Comment}
	for _, s := range c.Archive.Sections {
		a.Sections = append(a.Sections, Section{Name: s.Name, Data: testName.ReplaceAll(s.Data, []byte(x.cfg.HostRewrite))})
	}
	nc, err := Parse(c.Name, a.Format())
	if err != nil {
		return nil, fmt.Errorf("after --host-rewrite: %w", err)
	}
	nc.Path = c.Path
	if c.Audit == nil {
		nc.Audit = nil
	}
	return nc, nil
}

// Check prepares c, runs it on x and diffs it. Notes say what was not
// checked; a *Skip error says the case was not run.
func (x *External) Check(c *Case) (diffs []string, notes []string, err error) {
	pc, err := x.Prepare(c)
	if err != nil {
		return nil, nil, err
	}
	if c.Audit != nil && pc.Audit == nil {
		notes = append(notes, "audit not checked: a request without valid sandbox credentials has no tenant's audit row")
	}
	res, err := RunOn(x, pc, false)
	if err != nil {
		return nil, notes, err
	}
	diffs, err = Diff(pc, res)
	return diffs, notes, err
}

func (x *External) open(c *Case) (session, error) {
	s := &extSession{x: x, c: c, ctx: context.Background()}
	// Each case starts from the tenant's settings as they were.
	if err := s.updateSettings(x.basePatch()); err != nil {
		return nil, err
	}
	return s, nil
}

func (x *External) basePatch() vault.SettingsPatch {
	allow, deny := slices.Clone(x.base.EgressAllowHosts), slices.Clone(x.base.EgressDenyHosts)
	if allow == nil {
		allow = []string{}
	}
	if deny == nil {
		deny = []string{}
	}
	return vault.SettingsPatch{AllowEndUserCredentials: &x.base.AllowEndUserCredentials, EgressAllowHosts: &allow, EgressDenyHosts: &deny}
}

type extSession struct {
	x         *External
	c         *Case
	ctx       context.Context
	sandboxes []string
	secrets   []string
	proxy     string
	caPEM     string
}

func (s *extSession) createSandbox(in vault.SandboxInput) (string, string, error) {
	out, err := s.x.api.CreateSandbox(s.ctx, in)
	if err != nil {
		return "", "", err
	}
	s.sandboxes = append(s.sandboxes, out.ID)
	if s.proxy == "" {
		s.proxy, s.caPEM = out.ProxyURL, out.CACertPEM
		if s.x.cfg.ProxyURL != "" {
			s.proxy = s.x.cfg.ProxyURL
		}
	}
	return out.ID, out.ProxyToken, nil
}

func (s *extSession) upsertSecret(in vault.SecretInput) (string, error) {
	if in.Scope != vault.ScopeResource {
		// Never overwrite (and then delete) a secret the tenant holds.
		have, err := s.x.api.ListSecrets(s.ctx, client.SecretFilter{Name: in.Name, Scope: in.Scope,
			OwnerUserID: in.OwnerUserID, WorkspaceID: in.WorkspaceID, ExternalUserID: in.ExternalUserID, ExternalWorkspaceID: in.ExternalWorkspaceID, Limit: 1})
		if err != nil {
			return "", err
		}
		if len(have.Secrets) > 0 {
			return "", fmt.Errorf("the tenant already holds a %s secret %q (%s): replay into a tenant of its own (--operator-key)", in.Scope, in.Name, have.Secrets[0].ID)
		}
	}
	out, err := s.x.api.UpsertSecret(s.ctx, in)
	if err != nil {
		return "", err
	}
	s.secrets = append(s.secrets, out.Secret.ID)
	return out.Secret.ID, nil
}

func (s *extSession) rotateSecret(id, value string) error {
	_, err := s.x.api.RotateSecret(s.ctx, id, vault.RotateInput{Value: value})
	return err
}

func (s *extSession) disableSecret(id string) error {
	_, err := s.x.api.DisableSecret(s.ctx, id)
	return err
}

func (s *extSession) createBinding(in vault.BindingInput) error {
	_, err := s.x.api.CreateBinding(s.ctx, in)
	return err
}

func (s *extSession) updateSettings(p vault.SettingsPatch) error {
	_, err := s.x.api.UpdateSettings(s.ctx, p)
	return err
}

func (s *extSession) env(id string) ([]resolver.EnvEntry, error) {
	out, err := s.x.api.SandboxEnv(s.ctx, id)
	return out.Placeholders, err
}

func (s *extSession) ensurePlaceholder(_, name, _ string) (string, error) {
	return "", &Skip{fmt.Sprintf("needs a placeholder for %s, which the API issues only for names that resolve", name)}
}

func (s *extSession) proxyAddr() string {
	u, err := url.Parse(s.proxy)
	if err != nil || u.Host == "" {
		return s.proxy
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

func (s *extSession) roots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(s.caPEM))
	roots.AddCert(s.x.up.CA.Certificate())
	return roots
}

func (s *extSession) upstream() *Upstream { return s.x.up }

// event polls the newest request row of the sandbox until it holds a
// status (the final row), or the wait ends.
func (s *extSession) event(id string, none bool) (*proxy.Event, error) {
	if id == "" {
		return nil, nil
	}
	wait := s.x.cfg.AuditWait
	if none {
		wait = 500 * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	var last *audit.Row
	for {
		page, err := s.x.api.Audit(s.ctx, client.AuditFilter{SandboxID: id, Kind: audit.KindRequest, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if len(page.Rows) > 0 {
			last = &page.Rows[0]
			if last.Status != 0 && !none {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last == nil {
		return nil, nil
	}
	ev := &proxy.Event{ID: last.ID, Final: true, Time: last.Time, TenantID: last.TenantID, SandboxID: last.SandboxID,
		Host: last.Host, Method: last.Method, Path: last.Path, Status: last.Status,
		Outcome: proxy.Outcome(last.Outcome), Reason: last.Reason}
	for _, u := range last.Uses {
		ev.Uses = append(ev.Uses, proxy.Use{Name: u.Name, SecretID: u.SecretID, Version: u.Version, Level: u.Level,
			Location: vault.Location(u.Location), Action: proxy.Action(u.Action), Reason: u.Reason, Leak: u.Leak, LeakSandboxID: u.LeakSandboxID})
	}
	return ev, nil
}

// close deletes what the case created and puts the settings back.
func (s *extSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Best effort: a failed deletion leaves a row the next run's
	// "already holds" check names.
	for _, id := range s.secrets {
		s.x.api.DeleteSecret(ctx, id)
	}
	for _, id := range s.sandboxes {
		s.x.api.DeleteSandbox(ctx, id) // and its bindings
	}
	s.x.api.UpdateSettings(ctx, s.x.basePatch())
}
