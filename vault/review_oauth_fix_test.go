package vault

import (
	"errors"
	"testing"
	"time"
)

// Regression: an unknown state (the unauthenticated callback), a state of
// the wrong form and a state already used never open a write transaction.
func TestReviewOAuthFixUnknownStateNoWrites(t *testing.T) {
	var counted *countingBackend
	s := openTest(t, func(c *Config) {
		c.NoSync = false
		counted = &countingBackend{Backend: newTestBackend(t, *c)}
		c.Backend = counted
	})
	tn, _, err := s.CreateTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.CreateOAuthFlow(tn.ID, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: time.Now().Add(10 * time.Minute)}, State: "state-cccccccccccccccc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimOAuthState("state-cccccccccccccccc", ClaimBy{TenantID: tn.ID}); err != nil {
		t.Fatalf("first claim of a live state: %v", err)
	}
	before := counted.writes.Load()
	for range 200 {
		if _, _, err := s.ClaimOAuthState("not-a-state-of-anyone-xxxxxxxx", ClaimBy{}); !errors.Is(err, ErrUnknownState) {
			t.Fatalf("unknown state: %v", err)
		}
		if _, _, err := s.ClaimOAuthState("bad state\x00 with spaces and more", ClaimBy{}); !errors.Is(err, ErrUnknownState) {
			t.Fatalf("malformed state: %v", err)
		}
		if _, _, err := s.ClaimOAuthState("short", ClaimBy{}); !errors.Is(err, ErrUnknownState) {
			t.Fatalf("short state: %v", err)
		}
		if got, _, err := s.ClaimOAuthState("state-cccccccccccccccc", ClaimBy{}); !errors.Is(err, ErrStateUsed) || got.ID != f.ID {
			t.Fatalf("used state: %v (flow %q)", err, got.ID)
		}
		if _, _, err := s.ClaimOAuthState("state-cccccccccccccccc", ClaimBy{TenantID: "ten_other"}); !errors.Is(err, ErrUnknownState) {
			t.Fatalf("another tenant's state: %v", err)
		}
	}
	if n := counted.writes.Load() - before; n > 0 {
		t.Errorf("unknown, malformed or used states began %d write transactions", n)
	}
}
