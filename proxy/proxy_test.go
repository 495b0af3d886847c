package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

func TestSmokeHeader(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-real-123", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.openai.test"}})
	ph := e.placeholder(sbx, "openai")
	c := e.client(sbx.ID, token)
	resp, body := do(t, c, "GET", e.url("https", "api.openai.test", "/v1/models"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	got := e.up.last(t)
	if got.Header.Get("Authorization") != "Bearer sk-real-123" {
		t.Fatalf("upstream got %q", got.Header.Get("Authorization"))
	}
	ev := e.event(t)
	if ev.Outcome != OutcomeSubstituted || len(ev.Uses) != 1 || ev.Uses[0].Level != "tenant" {
		t.Fatalf("event %+v", ev)
	}
	t.Log(e.logs.String())
	if strings.Contains(e.logs.String(), "sk-real-123") {
		t.Fatal("value in logs")
	}
	_ = http.StatusOK
}
