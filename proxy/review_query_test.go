package proxy

// Regression test from the security review: inside a MITM'd tunnel
// httputil.ReverseProxy (Rewrite mode) ran cleanQueryParams on the outbound
// URL: a query holding a ';' or a malformed %-escape was re-encoded from
// url.ParseQuery, which dropped the unparsable pairs and reordered the rest.
// A forward proxy passes the query as the sandbox sent it (signed URLs, APIs
// that use ';'), as a byte tunnel or plain HTTP does: it must arrive byte
// for byte.

import (
	"testing"

	"github.com/egressd/egressd/vault"
)

func TestReviewMITMQueryForwardedVerbatim(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}, SubstituteIn: []vault.Location{vault.InQuery}})
	ph := e.placeholder(sbx, "k")
	c := e.client(sbx.ID, token)
	for _, tc := range []struct{ q, want string }{
		{"z=1&a=2;b=3", "z=1&a=2;b=3"},
		{"z=1&a=100%", "z=1&a=100%"},
		// With a substitution, only the placeholder changes.
		{"z=1&key=" + ph + ";b=3&a=100%", "z=1&key=" + realValue + ";b=3&a=100%"},
	} {
		resp, _ := do(t, c, "GET", e.url("https", "api.test", "/v1?"+tc.q), nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got, want := e.up.last(t).URI, "/v1?"+tc.want; got != want {
			t.Fatalf("query %q arrived as %q, want %q", tc.q, got, want)
		}
	}
}
