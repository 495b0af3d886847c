package vault

import (
	"errors"
	"testing"
	"time"
)

// Old flows and their states go; recent ones, pending or not, stay usable.
func TestPruneOAuthFlows(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	old, err := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: now.Add(10 * time.Minute)}, State: "state-oooooooooooooooo"})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(25 * time.Hour)
	recent, err := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: now.Add(10 * time.Minute)}, State: "state-rrrrrrrrrrrrrrrr"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneOAuthFlows(now.Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d flows (%v), want 1", n, err)
	}
	if _, err := s.OAuthFlow(tid, old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old flow is still there: %v", err)
	}
	if _, _, err := s.ClaimOAuthState("state-oooooooooooooooo", ClaimBy{TenantID: tid}); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("the old flow's state still claims: %v", err)
	}
	if f, err := s.OAuthFlow(tid, recent.ID); err != nil || f.Status != FlowPending {
		t.Fatalf("the recent flow: %v %v", f.Status, err)
	}
	if _, _, err := s.ClaimOAuthState("state-rrrrrrrrrrrrrrrr", ClaimBy{TenantID: tid}); err != nil {
		t.Fatalf("the recent flow's state: %v", err)
	}
	if n, err := s.PruneOAuthFlows(now.Add(-24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("second prune: %d (%v)", n, err)
	}
}
