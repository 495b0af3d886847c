package vault

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openOAuthTest(t *testing.T, now *time.Time) (*Store, string) {
	t.Helper()
	s, err := openCfg(t, Config{Path: filepath.Join(t.TempDir(), "v.db"), MasterKey: NewMasterKey(), NoSync: true, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tn, _, err := s.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	return s, tn.ID
}

func TestOAuthStateSingleUseAndExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	f, err := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: now.Add(10 * time.Minute)}, State: "state-aaaaaaaaaaaaaaaa", Verifier: "verifier-1234"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClaimOAuthState("state-aaaaaaaaaaaaaaaa", ClaimBy{TenantID: "other-tenant"}); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("other tenant: %v", err)
	}
	got, v, err := s.ClaimOAuthState("state-aaaaaaaaaaaaaaaa", ClaimBy{TenantID: tid})
	if err != nil || got.ID != f.ID || string(v.Reveal()) != "verifier-1234" {
		t.Fatalf("claim: %v %v", got, err)
	}
	if _, _, err := s.ClaimOAuthState("state-aaaaaaaaaaaaaaaa", ClaimBy{TenantID: tid}); !errors.Is(err, ErrStateUsed) {
		t.Fatalf("reuse: %v", err)
	}
	if _, _, err := s.ClaimOAuthState("state-unknownnnnnnnnnn", ClaimBy{TenantID: tid}); !errors.Is(err, ErrUnknownState) {
		t.Fatalf("unknown: %v", err)
	}
	f2, _ := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: now.Add(10 * time.Minute)}, State: "state-bbbbbbbbbbbbbbbb"})
	now = now.Add(11 * time.Minute)
	if _, _, err := s.ClaimOAuthState("state-bbbbbbbbbbbbbbbb", ClaimBy{TenantID: tid}); !errors.Is(err, ErrStateExpired) {
		t.Fatalf("expired: %v", err)
	}
	if g, _ := s.OAuthFlow(tid, f2.ID); g.Status != FlowExpired {
		t.Fatalf("status %s", g.Status)
	}
	raw, _ := s.OAuthFlow(tid, f.ID)
	if strings.Contains(raw.Error, "verifier") {
		t.Fatal(raw)
	}
}

func TestOAuthOverrideSealedAndRekeyed(t *testing.T) {
	now := time.Now()
	s, tid := openOAuthTest(t, &now)
	o, err := s.PutOAuthOverride(tid, "github", OAuthOverrideInput{ClientID: "cid", ClientSecret: "very-secret-value", DisplayName: "Acme GitHub"})
	if err != nil || !o.HasClientSecret {
		t.Fatalf("%v %v", o, err)
	}
	// An update without a secret keeps it.
	if o, err = s.PutOAuthOverride(tid, "github", OAuthOverrideInput{ClientID: "cid2"}); err != nil || !o.HasClientSecret {
		t.Fatalf("%v %v", o, err)
	}
	v, err := s.OAuthOverrideSecret(tid, "github")
	if err != nil || string(v.Reveal()) != "very-secret-value" {
		t.Fatal(err)
	}
	f, err := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExpiresAt: now.Add(10 * time.Minute)},
		State: "state-ffffffffffffffff", Verifier: "v", AuthorizeURL: "https://provider.test/authorize?state=x"})
	if err != nil {
		t.Fatal(err)
	}
	needBoltFile(t, s) // the rest rekeys the bbolt file; the cluster's rekey is not built yet
	path := s.Path()
	old := s.key
	s.Close()
	nk := NewMasterKey()
	if _, err := Rekey(path, old, nk, 0); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Config{Path: path, MasterKey: nk, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	v, err = s2.OAuthOverrideSecret(tid, "github")
	if err != nil || string(v.Reveal()) != "very-secret-value" {
		t.Fatalf("after rekey: %v", err)
	}
	sum := sha256.Sum256([]byte("nonce"))
	if _, u, err := s2.OpenOAuthConnect(f.ID, sum[:]); err != nil || u != "https://provider.test/authorize?state=x" {
		t.Fatalf("connect link after rekey: %q %v", u, err)
	}
	if err := s2.DeleteOAuthOverride(tid, "github"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.OAuthOverride(tid, "github"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

// A flow with a connect link is bound to the first browser that opens it:
// a second opening is refused, and only that browser's nonce claims the
// state; a wrong or missing nonce, or a wrong end-user asserted by the
// tenant, leaves the state unclaimed.
func TestOAuthConnectBinding(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	f, _ := connectFlow(t, s, tid, now, "state-dddddddddddddddd")
	nonce := "the-nonce-of-browser-a"
	sum := sha256.Sum256([]byte(nonce))
	got, u, err := s.OpenOAuthConnect(f.ID, sum[:])
	if err != nil || got.ID != f.ID || u != "https://provider.test/authorize?state=state-dddddddddddddddd" {
		t.Fatalf("open: %+v %q %v", got, u, err)
	}
	other := sha256.Sum256([]byte("browser-b"))
	if _, _, err := s.OpenOAuthConnect(f.ID, other[:]); !errors.Is(err, ErrConnectOpened) {
		t.Fatalf("second open: %v", err)
	}
	if _, _, err := s.OpenOAuthConnect("oaf_unknown", other[:]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown flow: %v", err)
	}
	for _, by := range []ClaimBy{{}, {Cookies: map[string]string{f.ID: "browser-b"}}, {Cookies: map[string]string{"oaf_x": nonce}},
		{TenantID: tid}, {TenantID: tid, ExternalUserID: "eu2"}} {
		if _, _, err := s.ClaimOAuthState("state-dddddddddddddddd", by); !errors.Is(err, ErrWrongBrowser) && !errors.Is(err, ErrWrongUser) {
			t.Fatalf("claim by %+v: %v", by, err)
		}
	}
	if _, _, err := s.ClaimOAuthState("state-dddddddddddddddd", ClaimBy{Cookies: map[string]string{f.ID: nonce}}); err != nil {
		t.Fatalf("right browser: %v", err)
	}
	if _, _, err := s.OpenOAuthConnect(f.ID, other[:]); !errors.Is(err, ErrStateUsed) {
		t.Fatalf("open after claim: %v", err)
	}
	// A flow without a connect link has no connect page, and its state is
	// claimed only by its tenant asserting its user.
	f2, _ := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", OwnerUserID: "u9", Scope: ScopeUser, ExpiresAt: now.Add(10 * time.Minute)}, State: "state-eeeeeeeeeeeeeeee"})
	if _, _, err := s.OpenOAuthConnect(f2.ID, other[:]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open without link: %v", err)
	}
	if _, _, err := s.ClaimOAuthState("state-eeeeeeeeeeeeeeee", ClaimBy{TenantID: tid, OwnerUserID: "u8"}); !errors.Is(err, ErrWrongUser) {
		t.Fatalf("wrong owner: %v", err)
	}
	if _, _, err := s.ClaimOAuthState("state-eeeeeeeeeeeeeeee", ClaimBy{TenantID: tid, OwnerUserID: "u9"}); err != nil {
		t.Fatalf("right owner: %v", err)
	}
}
