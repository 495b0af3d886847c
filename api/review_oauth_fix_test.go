package api_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/egressd/egressd/client"
)

// Regression: redirect_uri is refused at connect (400) unless it is
// egressd's own callback, or with a tenant override its callback_url; a
// tenant callback must be https (http only on loopback).
func TestReviewOAuthFixRedirectURI(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	refused := func(in client.ConnectInput) {
		t.Helper()
		c, err := e.admin.Connect(ctx, in)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 400 {
			t.Errorf("connect with redirect_uri %q: %+v, %v (want 400)", in.RedirectURI, c, err)
		}
	}
	own := e.apiURL + "/api/v1/egress/oauth/callback"
	for _, r := range []string{"http://attacker.example/steal", "https://attacker.example/steal", own + "/x"} {
		refused(client.ConnectInput{Provider: "fake", ExternalUserID: "u1", RedirectURI: r})
	}
	c, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "u1", RedirectURI: own})
	if err != nil {
		t.Fatalf("connect with egressd's own callback: %v", err)
	}
	if c.AuthorizeURL != e.apiURL+"/connect/"+c.ID {
		t.Errorf("authorize URL %s: want the connect link", c.AuthorizeURL)
	}
	if u, _ := url.Parse(e.web().providerURL(c.AuthorizeURL)); u.Query().Get("redirect_uri") != own {
		t.Errorf("authorize URL %s", c.AuthorizeURL)
	}
	// With a tenant override: its callback_url or egressd's own.
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		CallbackURL: "https://app.acme.test/oauth/cb"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"https://app.acme.test/oauth/cb", own, ""} {
		if _, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "u1", RedirectURI: r}); err != nil {
			t.Errorf("override, redirect_uri %q: %v", r, err)
		}
	}
	for _, r := range []string{"https://attacker.example/steal", "http://app.acme.test/oauth/cb"} {
		refused(client.ConnectInput{Provider: "fake", ExternalUserID: "u1", RedirectURI: r})
	}
	// A plain-http override callback is refused unless on loopback.
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		CallbackURL: "http://app.acme.test/oauth/cb"}); err == nil {
		refused(client.ConnectInput{Provider: "fake", ExternalUserID: "u1"})
	}
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		CallbackURL: "http://localhost:3000/oauth/cb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "u1"}); err != nil {
		t.Errorf("override with a loopback http callback: %v", err)
	}
}

// Regression: connect refuses (4xx, before any consent) attribution the
// secret could not be stored with.
func TestReviewOAuthFixEarlyValidation(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	for _, in := range []client.ConnectInput{
		{Provider: "fake", ExternalUserID: "bad\x01id"},
		{Provider: "fake", ExternalUserID: string(make([]byte, 5000))},
		{Provider: "fake", ResourceID: "sbx_does_not_exist"},
		{Provider: "fake", ExternalUserID: "u1", ResourceType: "bogus"},
	} {
		c, err := e.admin.Connect(ctx, in)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status < 400 || ce.Status >= 500 {
			t.Errorf("connect %q/%q/%q: %+v, %v (want refused with a 4xx)", in.ExternalUserID[:min(len(in.ExternalUserID), 10)], in.ResourceID, in.ResourceType, c, err)
		}
	}
	if got := e.fake.latest(); got != "real-access-token-0-xyz" {
		t.Errorf("provider tokens issued: latest %s", got)
	}
}

// Regression: the secrets API refuses metadata keys starting with
// "oauth_" (the marks only a completed connect sets).
func TestReviewOAuthFixReservedMetadata(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	for _, k := range []string{"oauth_client", "oauth_provider", "OAuth_Client"} {
		_, err := e.admin.UpsertSecret(ctx, client.SecretInput{Name: "X", Value: "v", Type: "oauth_token", Scope: "tenant",
			AllowedHosts: []string{"api.fake.test"}, Metadata: map[string]string{k: "operator:operator-client-id"}})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 400 {
			t.Errorf("metadata key %q: %v (want 400)", k, err)
		}
	}
	if _, err := e.admin.UpsertSecret(ctx, client.SecretInput{Name: "Y", Value: "v", Scope: "tenant",
		AllowedHosts: []string{"api.fake.test"}, Metadata: map[string]string{"team": "a"}}); err != nil {
		t.Errorf("ordinary metadata: %v", err)
	}
}
