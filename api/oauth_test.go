package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// The whole connect: connect → authorize → callback → flow completed →
// a sandbox of that user calls the provider's API through the proxy with
// the real token; then the token expires and 50 concurrent calls refresh
// it exactly once.
func TestOAuthConnectEndToEnd(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	// The authorize URL is egressd's connect link, not the provider's.
	if conn.AuthorizeURL != e.apiURL+"/connect/"+conn.ID || strings.Contains(conn.AuthorizeURL, conn.State) {
		t.Fatalf("authorize URL %s: want the connect link", conn.AuthorizeURL)
	}
	if conn.Status != vault.FlowPending {
		t.Fatalf("status %s", conn.Status)
	}

	// A client waits for completion before the user has even clicked.
	type waited struct {
		f   client.Flow
		err error
	}
	wch := make(chan waited, 1)
	go func() {
		f, err := e.admin.WaitForCompletion(ctx, conn.ID, 20*time.Second)
		wch <- waited{f, err}
	}()
	time.Sleep(50 * time.Millisecond)
	status, body := e.browser(conn.AuthorizeURL)
	if status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("callback %d %s", status, body)
	}
	// The connect link sent the browser on to the provider's authorize URL.
	e.fake.mu.Lock()
	q := e.fake.authorize[len(e.fake.authorize)-1]
	e.fake.mu.Unlock()
	if q.Get("client_id") != "operator-client-id" || q.Get("redirect_uri") != e.apiURL+"/api/v1/egress/oauth/callback" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") != conn.State || q.Get("scope") != "user" {
		t.Fatalf("authorize query %v", q)
	}
	var w waited
	select {
	case w = <-wch:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitForCompletion did not wake on completion")
	}
	if w.err != nil || w.f.Status != vault.FlowCompleted || w.f.SecretID == "" {
		t.Fatalf("wait: %+v %v", w.f, w.err)
	}
	first := e.fake.latest()
	sec, err := e.admin.GetSecret(ctx, w.f.SecretID)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != "oauth_token" || sec.Scope != vault.ScopeExternalUser || sec.ExternalUserID != "eu1" || !sec.HasRefreshToken ||
		sec.ExpiresAt == nil || sec.Metadata["oauth_provider"] != "fake" || strings.Join(sec.AllowedHosts, ",") != "example.com" || sec.ExposeAsEnv != "FAKE_TOKEN" {
		t.Fatalf("secret %+v", sec)
	}
	rows, _, err := e.store.QueryAudit(w.f.TenantID, audit.Filter{SecretID: sec.ID})
	if err != nil || len(rows) == 0 || rows[len(rows)-1].Action != vault.ActionOAuthCompleted || rows[len(rows)-1].Details["provider"] != "fake" {
		t.Fatalf("audit rows %+v %v", rows, err)
	}

	// A sandbox of that external user uses the token through the proxy.
	sbx, err := e.admin.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	ph := ""
	for _, p := range sbx.Placeholders {
		if p.Env == "FAKE_TOKEN" {
			ph = p.Placeholder
		}
	}
	if ph == "" {
		t.Fatalf("no FAKE_TOKEN placeholder in %+v", sbx.Placeholders)
	}
	sc := e.sandboxClient(sbx.ID, sbx.ProxyToken)
	_, port, _ := net.SplitHostPort(e.fake.srv.Listener.Addr().String())
	apiURL := "https://example.com:" + port + "/api/user"
	call := func() (int, error) {
		req, _ := http.NewRequest("GET", apiURL, nil)
		req.Header.Set("Authorization", "Bearer "+ph)
		resp, err := sc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := call(); err != nil || code != 200 {
		t.Fatalf("API call: %d %v", code, err)
	}
	e.fake.mu.Lock()
	got := e.fake.apiTokens[len(e.fake.apiTokens)-1]
	e.fake.mu.Unlock()
	if got != first {
		t.Fatalf("provider saw %q, want the issued token", got)
	}

	// The token expires: 50 concurrent calls, one refresh, all with the new token.
	past := time.Now().Add(-time.Minute)
	if _, err := e.store.RotateSecret(w.f.TenantID, sec.ID, vault.RotateInput{Value: first, ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	e.fake.mu.Lock()
	seenBefore := len(e.fake.apiTokens)
	e.fake.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, err := call(); err != nil || code != 200 {
				errs <- errors.New("call failed: " + http.StatusText(code))
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.fake.refreshCnt.Load(); n != 1 {
		t.Fatalf("%d refreshes, want exactly 1", n)
	}
	fresh := e.fake.latest()
	e.fake.mu.Lock()
	for _, tok := range e.fake.apiTokens[seenBefore:] {
		if tok != fresh {
			t.Errorf("a request carried %q, want the refreshed token", tok)
		}
	}
	e.fake.mu.Unlock()
	after, _ := e.admin.GetSecret(ctx, sec.ID)
	if after.Version != sec.Version+2 || !after.HasRefreshToken || after.ExpiresAt == nil || !after.ExpiresAt.After(time.Now()) {
		t.Fatalf("after refresh %+v", after)
	}
	// Connecting again replaces the secret (same id, new version).
	conn2, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	e.browser(conn2.AuthorizeURL)
	f2, err := e.admin.WaitForCompletion(ctx, conn2.ID, 5*time.Second)
	if err != nil || f2.SecretID != sec.ID {
		t.Fatalf("reconnect: %+v %v", f2, err)
	}
	e.noLeak(t)
}

// noLeak checks that no token or client secret is in any log line.
func (e *oauthEnv) noLeak(t *testing.T) {
	t.Helper()
	logs := e.logs.String()
	for _, v := range []string{"real-access-token", "real-refresh-token", "operator-client-secret-value", "tenant-client-secret-value", "code_verifier"} {
		if strings.Contains(logs, v) {
			t.Errorf("log carries %q", v)
		}
	}
}

// rawGet is an admin GET's status and body.
func (e *oauthEnv) raw(method, path string, body io.Reader) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.apiURL+path, body)
	req.Header.Set("Authorization", "Bearer "+e.adminKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *oauthEnv) adminKey() string { return e.key }

func TestOAuthStateReuseAndExpiry(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	code, state, _ := e.authorizeWithoutCallback(conn.AuthorizeURL)
	f, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code, state)
	if err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("complete: %+v %v", f, err)
	}
	// Reuse of the state: refused, nothing new stored, the flow keeps its result.
	before, _ := e.admin.ListSecrets(ctx, client.SecretFilter{})
	_, err = e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code, state)
	if client.StatusOf(err) != 409 || apiErr(err).Code != "oauth_state_used" {
		t.Fatalf("reuse: %v", err)
	}
	if status, body := e.browser(e.apiURL + "/api/v1/egress/oauth/callback?code=" + code + "&state=" + state); status != 409 || !strings.Contains(body, "failed") {
		t.Fatalf("reuse via callback: %d %s", status, body)
	}
	after, _ := e.admin.ListSecrets(ctx, client.SecretFilter{})
	if len(after.Secrets) != len(before.Secrets) || after.Secrets[0].Version != before.Secrets[0].Version {
		t.Fatal("a reused state stored something")
	}
	// Unknown state.
	if status, _ := e.browser(e.apiURL + "/api/v1/egress/oauth/callback?code=x&state=not-a-state"); status != 400 {
		t.Fatalf("unknown state: %d", status)
	}
	// Expired state: 11 minutes later the flow is expired and stores nothing.
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu2"})
	code2, state2, _ := e.authorizeWithoutCallback(conn2.AuthorizeURL)
	later := time.Now().Add(11 * time.Minute)
	e.now.Store(&later)
	_, err = e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu2"}, code2, state2)
	if client.StatusOf(err) != 400 || apiErr(err).Code != "oauth_state_expired" {
		t.Fatalf("expired: %v", err)
	}
	_, err = e.admin.WaitForCompletion(ctx, conn2.ID, 5*time.Second)
	var fe *client.FlowError
	if !errors.As(err, &fe) || fe.Flow.Status != vault.FlowExpired {
		t.Fatalf("wait on expired: %v", err)
	}
	if page, _ := e.admin.ListSecrets(ctx, client.SecretFilter{ExternalUserID: "eu2"}); len(page.Secrets) != 0 {
		t.Fatal("an expired flow stored a secret")
	}
	// A pending flow past its expiry reads as expired.
	e.now.Store(nil)
	conn3, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu3"})
	e.now.Store(&later)
	if f, _ := e.admin.Flow(ctx, conn3.ID, 0); f.Status != vault.FlowExpired {
		t.Fatalf("status %s", f.Status)
	}
	e.noLeak(t)
}

func TestOAuthPKCEVerifierChecked(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	code, state, _ := e.authorizeWithoutCallback(conn.AuthorizeURL)
	// The provider now expects another verifier than the flow holds.
	e.fake.mu.Lock()
	g := e.fake.codes[code]
	g.challenge = "bm90LXRoZS1yaWdodC1jaGFsbGVuZ2U"
	e.fake.codes[code] = g
	e.fake.mu.Unlock()
	_, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code, state)
	if client.StatusOf(err) != 502 || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("wrong verifier: %v", err)
	}
	f, _ := e.admin.Flow(ctx, conn.ID, 0)
	if f.Status != vault.FlowFailed || f.SecretID != "" {
		t.Fatalf("flow %+v", f)
	}
	if page, _ := e.admin.ListSecrets(ctx, client.SecretFilter{}); len(page.Secrets) != 0 {
		t.Fatal("stored a secret")
	}
	// With the right verifier the same provider accepts.
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	code2, state2, _ := e.authorizeWithoutCallback(conn2.AuthorizeURL)
	if f, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code2, state2); err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestOAuthProviderErrors(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	// The token endpoint refuses the exchange.
	e.fake.failToken = true
	conn, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	status, body := e.browser(conn.AuthorizeURL)
	if status != 502 || !strings.Contains(body, "invalid_grant") {
		t.Fatalf("callback %d %s", status, body)
	}
	_, err := e.admin.WaitForCompletion(ctx, conn.ID, 5*time.Second)
	var fe *client.FlowError
	if !errors.As(err, &fe) || fe.Flow.Status != vault.FlowFailed || !strings.Contains(fe.Flow.Error, "invalid_grant") {
		t.Fatalf("wait: %v", err)
	}
	// The user denied access at the provider.
	e.fake.failToken = false
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	_, state, _ := e.authorizeWithoutCallback(conn2.AuthorizeURL)
	if status, _ := e.browser(e.apiURL + "/api/v1/egress/oauth/callback?error=access_denied&state=" + state); status != 502 {
		t.Fatalf("denied: %d", status)
	}
	if f, _ := e.admin.Flow(ctx, conn2.ID, 0); f.Status != vault.FlowFailed || !strings.Contains(f.Error, "access_denied") {
		t.Fatalf("flow %+v", f)
	}
	if page, _ := e.admin.ListSecrets(ctx, client.SecretFilter{}); len(page.Secrets) != 0 {
		t.Fatal("a failed flow stored a secret")
	}
	// Unknown provider; a built-in provider without a configured app.
	_, err = e.admin.Connect(ctx, client.ConnectInput{Provider: "nope", ExternalUserID: "eu1"})
	if client.StatusOf(err) != 404 || apiErr(err).Code != "unknown_provider" {
		t.Fatalf("unknown provider: %v", err)
	}
	_, err = e.admin.Connect(ctx, client.ConnectInput{Provider: "github", ExternalUserID: "eu1"})
	if client.StatusOf(err) != 409 || apiErr(err).Code != "provider_not_configured" {
		t.Fatalf("unconfigured provider: %v", err)
	}
	if _, err := e.admin.PutOverride(ctx, "nope", client.OverrideInput{ClientID: "x"}); client.StatusOf(err) != 404 {
		t.Fatalf("override of unknown provider: %v", err)
	}
	// A flow's state completed by another tenant is unknown there.
	conn3, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	code3, state3, _ := e.authorizeWithoutCallback(conn3.AuthorizeURL)
	oc, _ := client.New(e.apiURL, e.op)
	other, err := oc.CreateTenant(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	oc2, _ := client.New(e.apiURL, other.APIKey)
	if _, err := oc2.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code3, state3); client.StatusOf(err) != 400 {
		t.Fatalf("other tenant: %v", err)
	}
	if _, err := oc2.Flow(ctx, conn3.ID, 0); client.StatusOf(err) != 404 {
		t.Fatalf("other tenant's flow: %v", err)
	}
	if f, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code3, state3); err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("own tenant after: %+v %v", f, err)
	}
	e.noLeak(t)
}

func TestOAuthOverrideInForce(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	inForce := func() string {
		ps, err := e.admin.Providers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		state := ""
		for _, p := range ps {
			names[p.Name] = true
			if p.Name == "fake" {
				state = p.InForce
			}
		}
		for _, n := range []string{"github", "google", "slack", "microsoft", "gitlab", "linear", "notion", "fake"} {
			if !names[n] {
				t.Fatalf("provider %s missing", n)
			}
		}
		return state
	}
	if got := inForce(); got != "operator" {
		t.Fatalf("in force %q", got)
	}
	o, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		CallbackURL: "https://app.acme.test/oauth/cb", DisplayName: "Acme", Branding: map[string]string{"button_label": "Connect Acme"}})
	if err != nil || !o.HasClientSecret || o.Branding["button_label"] != "Connect Acme" {
		t.Fatalf("%+v %v", o, err)
	}
	if got := inForce(); got != "override" {
		t.Fatalf("in force %q", got)
	}
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	au, _ := url.Parse(conn.AuthorizeURL)
	if au.Query().Get("client_id") != "tenant-client-id" || au.Query().Get("redirect_uri") != "https://app.acme.test/oauth/cb" {
		t.Fatalf("authorize URL %s", conn.AuthorizeURL)
	}
	// The tenant's own callback forwards code and state.
	code, state, redirect := e.authorizeWithoutCallback(conn.AuthorizeURL)
	if redirect != "https://app.acme.test/oauth/cb" {
		t.Fatalf("redirect %s", redirect)
	}
	if f, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code, state); err != nil || f.Status != vault.FlowCompleted || !f.Override {
		t.Fatalf("%+v %v", f, err)
	}
	// The client secret is never returned.
	for _, path := range []string{"/api/v1/egress/oauth/providers", "/api/v1/egress/oauth/overrides/fake", "/api/v1/egress/oauth/flows/" + conn.ID} {
		status, body := e.raw("GET", path, nil)
		if status != 200 || strings.Contains(body, "tenant-client-secret-value") || strings.Contains(body, "operator-client-secret-value") || strings.Contains(body, "real-access-token") {
			t.Fatalf("%s: %d %s", path, status, body)
		}
	}
	status, body := e.raw("PUT", "/api/v1/egress/oauth/overrides/fake", strings.NewReader(`{"client_id":"x","client_secret":"tenant-client-secret-value","callback_url":"not a url"}`))
	if status != 400 || strings.Contains(body, "tenant-client-secret-value") {
		t.Fatalf("bad put: %d %s", status, body)
	}
	// Without the override the operator's app is in force again.
	if err := e.admin.DeleteOverride(ctx, "fake"); err != nil {
		t.Fatal(err)
	}
	if got := inForce(); got != "operator" {
		t.Fatalf("in force %q", got)
	}
	if _, err := e.admin.GetOverride(ctx, "fake"); client.StatusOf(err) != 404 {
		t.Fatal(err)
	}
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	au, _ = url.Parse(e.web().providerURL(conn2.AuthorizeURL))
	if au.Query().Get("client_id") != "operator-client-id" || au.Query().Get("redirect_uri") != e.apiURL+"/api/v1/egress/oauth/callback" {
		t.Fatalf("authorize URL %s", conn2.AuthorizeURL)
	}
	e.noLeak(t)
}

func TestOAuthFlowWaitParam(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if status, _ := e.raw("GET", "/api/v1/egress/oauth/flows/"+conn.ID+"?wait=soon", nil); status != 400 {
		t.Fatalf("bad wait: %d", status)
	}
	start := time.Now()
	status, body := e.raw("GET", "/api/v1/egress/oauth/flows/"+conn.ID+"?wait=200ms", nil)
	if status != 200 || !strings.Contains(body, `"pending"`) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("wait: %d %s after %v", status, body, time.Since(start))
	}
	if strings.Contains(body, conn.State) {
		t.Fatal("the flow answer carries its state")
	}
}

func TestOAuthNotConfigured(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/egress/oauth/providers"}, {"POST", "/api/v1/egress/oauth/connect"},
		{"GET", "/api/v1/egress/oauth/callback?state=x"}, {"GET", "/api/v1/egress/oauth/overrides/github"},
	} {
		code, body := h.do(c.method, c.path, h.adminKey, nil)
		checkRefusal(t, code, body, 501, "OAuth is not configured")
	}
}
