package vault

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
)

func TestReissueSandboxToken(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now }).As(Actor{Kind: ActorAPIKey, ID: "key_admin1"})
	tn := mustTenant(t, s, "acme")
	other := mustTenant(t, s, "other")
	sbx, old := mustSandbox(t, s, tn.ID, SandboxInput{OwnerUserID: "alice"})
	if sbx.TokenIssuedAt.IsZero() || sbx.TokenExpiresAt != nil {
		t.Fatalf("new sandbox: issued %v, expires %v", sbx.TokenIssuedAt, sbx.TokenExpiresAt)
	}

	if _, _, err := s.ReissueSandboxToken(other.ID, sbx.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant re-issued: %v", err)
	}
	before := dump(t, s)
	if _, _, err := s.ReissueSandboxToken(tn.ID, sbx.ID, TTL(time.Second)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 1s ttl: %v", err)
	}
	if after := dump(t, s); len(after) != len(before) {
		t.Fatalf("a refused re-issue changed the store")
	}
	if _, err := s.AuthenticateSandbox(sbx.ID, old); err != nil {
		t.Fatalf("the old token stopped after a refused re-issue: %v", err)
	}

	clock.Advance(time.Minute)
	got, tok, err := s.ReissueSandboxToken(tn.ID, sbx.ID, TTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if tok == old || !got.TokenIssuedAt.After(sbx.TokenIssuedAt) || got.TokenExpiresAt == nil || !got.TokenExpiresAt.Equal(got.TokenIssuedAt.Add(time.Hour)) {
		t.Fatalf("re-issued: %+v", got)
	}
	if _, err := s.AuthenticateSandbox(sbx.ID, old); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("the old token still works: %v", err)
	}
	if _, err := s.AuthenticateSandbox(sbx.ID, tok); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	clock.Advance(time.Hour)
	if _, err := s.AuthenticateSandbox(sbx.ID, tok); !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after its ttl: %v", err)
	}

	var issued []audit.Row
	for _, r := range adminRows(t, s, tn.ID) {
		if r.Action == ActionSandboxToken {
			issued = append(issued, r)
		}
	}
	if len(issued) != 1 || issued[0].Details["token_expires_at"] != got.TokenExpiresAt.Format(time.RFC3339) {
		t.Fatalf("admin rows of the re-issue: %+v", issued)
	}
}

func TestCreateSandboxTokenTTL(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now }).As(Actor{Kind: ActorAPIKey, ID: "key_admin1"})
	tn := mustTenant(t, s, "acme")
	var in SandboxInput
	if err := json.Unmarshal([]byte(`{"token_ttl":"2d"}`), &in); err != nil {
		t.Fatal(err)
	}
	sbx, tok := mustSandbox(t, s, tn.ID, in)
	if sbx.TokenExpiresAt == nil || sbx.TokenExpiresAt.Sub(sbx.TokenIssuedAt) != 48*time.Hour {
		t.Fatalf("expires %v", sbx.TokenExpiresAt)
	}
	clock.Advance(48*time.Hour - time.Second)
	if _, err := s.AuthenticateSandbox(sbx.ID, tok); err != nil {
		t.Fatalf("before its ttl: %v", err)
	}
	clock.Advance(time.Second)
	if _, err := s.AuthenticateSandbox(sbx.ID, tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("at its ttl: %v", err)
	}
	created := 0
	for _, r := range adminRows(t, s, tn.ID) {
		if r.Action == ActionSandboxCreated && r.Details["token_expires_at"] == sbx.TokenExpiresAt.Format(time.RFC3339) {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d sandbox.created rows with the token's expiry", created)
	}
	if _, _, err := s.CreateSandbox(tn.ID, SandboxInput{TokenTTL: TTL(400 * 24 * time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a 400-day ttl: %v", err)
	}
}

func TestTTLJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{`"90m"`, 90 * time.Minute, true},
		{`"7d"`, 7 * 24 * time.Hour, true},
		{`3600`, time.Hour, true},
		{`null`, 0, true},
		{`"soon"`, 0, false},
		{`"-3d"`, 0, false},
		{`-5`, 0, false},
		{`1.5`, 0, false},
		{`"99999999999999999999d"`, 0, false},
	} {
		var got TTL
		err := json.Unmarshal([]byte(c.in), &got)
		if (err == nil) != c.ok || c.ok && time.Duration(got) != c.want {
			t.Errorf("%s: %v, %v", c.in, time.Duration(got), err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid", c.in, err)
		}
	}
}
