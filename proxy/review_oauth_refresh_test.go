package proxy

import (
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// Review regression: an expiring oauth_token whose placeholder goes to a
// host it is not allowed on is refused without a refresh (a sandbox cannot
// make egressd call the provider by aiming a placeholder anywhere), and
// nothing goes upstream with the stale value.
func TestReviewOAuthNoRefreshForDisallowedHost(t *testing.T) {
	fr := &fakeRefresher{next: "fresh-token-value"}
	e := newEnv(t, func(c *Config) { c.Refresher = fr })
	fr.store = e.store
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	oauthSecret(e, "stale-token-value", time.Now().Add(-time.Minute))
	// Another secret makes elsewhere.test a MITM host for this sandbox.
	e.secret(vault.SecretInput{Name: "OTHER", Value: "other-value", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"elsewhere.test"}})
	ph := e.placeholder(sbx, "GH")
	c := e.client(sbx.ID, token)
	resp, _ := do(t, c, "GET", e.url("https", "elsewhere.test", "/x"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") == "oauth_refresh_failed" {
		t.Fatalf("status %d reason %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	if fr.calls.Load() != 0 {
		t.Fatalf("refreshes %d for a host the token may not go to", fr.calls.Load())
	}
	// Over plain HTTP: refused, no refresh either.
	resp, _ = do(t, c, "GET", e.url("http", "api.test", "/x"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 403 || fr.calls.Load() != 0 {
		t.Fatalf("plain http: status %d refreshes %d", resp.StatusCode, fr.calls.Load())
	}
}
