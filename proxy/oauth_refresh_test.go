package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// fakeRefresher rotates the secret to next, or fails.
type fakeRefresher struct {
	store *vault.Store
	next  string
	fail  bool
	calls atomic.Int32
}

func (f *fakeRefresher) Refresh(_ context.Context, sec vault.Secret) (vault.Secret, vault.Value, error) {
	f.calls.Add(1)
	if f.fail {
		return vault.Secret{}, vault.Value{}, errors.New("provider said invalid_grant")
	}
	exp := time.Now().Add(time.Hour)
	out, err := f.store.RotateSecret(sec.TenantID, sec.ID, vault.RotateInput{Value: f.next, ExpiresAt: &exp})
	return out, vault.NewValue([]byte(f.next)), err
}

func oauthSecret(e *env, value string, exp time.Time) vault.Secret {
	return e.secret(vault.SecretInput{Name: "GH", Value: value, Type: "oauth_token", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1",
		AllowedHosts: []string{"api.test"}, RefreshToken: "rt-1", ExpiresAt: &exp})
}

func TestOAuthRefreshBeforeUse(t *testing.T) {
	fr := &fakeRefresher{next: "fresh-token-value"}
	e := newEnv(t, func(c *Config) { c.Refresher = fr })
	fr.store = e.store
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	oauthSecret(e, "stale-token-value", time.Now().Add(30*time.Second))
	ph := e.placeholder(sbx, "GH")
	c := e.client(sbx.ID, token)
	resp, _ := do(t, c, "GET", e.url("https", "api.test", "/user"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 200 || e.up.last(t).Header.Get("Authorization") != "Bearer fresh-token-value" || fr.calls.Load() != 1 {
		t.Fatalf("status %d, sent %q, refreshes %d", resp.StatusCode, e.up.last(t).Header.Get("Authorization"), fr.calls.Load())
	}
	// Now live for an hour: no second refresh.
	do(t, c, "GET", e.url("https", "api.test", "/user"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if fr.calls.Load() != 1 || e.up.last(t).Header.Get("Authorization") != "Bearer fresh-token-value" {
		t.Fatalf("refreshes %d", fr.calls.Load())
	}
}

func TestOAuthRefreshFailureRefuses(t *testing.T) {
	fr := &fakeRefresher{fail: true}
	e := newEnv(t, func(c *Config) { c.Refresher = fr })
	fr.store = e.store
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	oauthSecret(e, "stale-token-value", time.Now().Add(-time.Minute))
	ph := e.placeholder(sbx, "GH")
	c := e.client(sbx.ID, token)
	resp, _ := do(t, c, "GET", e.url("https", "api.test", "/user"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 502 || resp.Header.Get("X-Egress-Denied") != "oauth_refresh_failed" {
		t.Fatalf("status %d reason %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	if e.up.count() != 0 {
		t.Fatal("the stale token went upstream")
	}
	ev := e.event(t)
	if len(ev.Uses) != 1 || ev.Uses[0].Reason != "oauth_refresh_failed" || ev.Uses[0].Action != ActionDenied {
		t.Fatalf("uses %+v", ev.Uses)
	}
	// In a body it is left alone, and the row says why.
	e.secret(vault.SecretInput{Name: "GH", Value: "stale-token-value", Type: "oauth_token", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1",
		AllowedHosts: []string{"api.test"}, SubstituteIn: []vault.Location{vault.InBody}, ExpiresAt: ptr(time.Now().Add(-time.Minute))})
	resp, _ = do(t, c, "POST", e.url("https", "api.test", "/chat"), strings.NewReader(`{"q":"`+ph+`"}`), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || !strings.Contains(string(e.up.last(t).Body), ph) {
		t.Fatalf("status %d body %q", resp.StatusCode, e.up.last(t).Body)
	}
	if ev := e.event(t); len(ev.Uses) != 1 || ev.Uses[0].Reason != "oauth_refresh_failed" || ev.Uses[0].Action != ActionLeft {
		t.Fatalf("uses %+v", ev.Uses)
	}
}

// Regression: an upstream 401 is answered as it is, never retried with a
// refresh (no loop).
func TestOAuthUpstream401NoRetry(t *testing.T) {
	fr := &fakeRefresher{next: "fresh-token-value"}
	e := newEnv(t, func(c *Config) { c.Refresher = fr })
	fr.store = e.store
	e.up.reply = func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(401) }
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	oauthSecret(e, "live-token-value", time.Now().Add(time.Hour))
	ph := e.placeholder(sbx, "GH")
	resp, _ := do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/user"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 401 || e.up.count() != 1 || fr.calls.Load() != 0 {
		t.Fatalf("status %d, upstream calls %d, refreshes %d", resp.StatusCode, e.up.count(), fr.calls.Load())
	}
}

func ptr[T any](v T) *T { return &v }
