package vault

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

// Regression: looking at a connect link (the page's GET) changes
// nothing; the browser that bound it may open it again and gets the same
// URL without a write, any other one is refused; the look says the same
// as the open would.
func TestOAuthConnectFlowLooksOnly(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	f, au := connectFlow(t, s, tid, now, "state-ffffffffffffffff")
	a, b := sha256.Sum256([]byte("browser-a")), sha256.Sum256([]byte("browser-b"))
	for range 3 {
		for _, h := range [][]byte{nil, a[:], b[:]} {
			got, err := s.OAuthConnectFlow(f.ID, h)
			if err != nil || got.ID != f.ID || got.TenantID != tid {
				t.Fatalf("look: %+v %v", got, err)
			}
		}
	}
	if _, u, err := s.OpenOAuthConnect(f.ID, b[:]); err != nil || u != au {
		t.Fatalf("b opens after looks: %q %v", u, err)
	}
	if _, u, err := s.OpenOAuthConnect(f.ID, b[:]); err != nil || u != au {
		t.Fatalf("b opens again: %q %v", u, err)
	}
	if _, err := s.OAuthConnectFlow(f.ID, b[:]); err != nil {
		t.Fatalf("b looks: %v", err)
	}
	for _, h := range [][]byte{nil, a[:], b[:31]} {
		if got, err := s.OAuthConnectFlow(f.ID, h); !errors.Is(err, ErrConnectOpened) || got.ID != f.ID {
			t.Fatalf("look by another browser: %+v %v", got, err)
		}
	}
	if _, _, err := s.OpenOAuthConnect(f.ID, a[:]); !errors.Is(err, ErrConnectOpened) {
		t.Fatalf("a opens: %v", err)
	}
	// Unknown, expired, used; the flow comes with the refusal when known.
	if got, err := s.OAuthConnectFlow("oaf_unknown", nil); !errors.Is(err, ErrNotFound) || got.ID != "" {
		t.Fatalf("unknown: %+v %v", got, err)
	}
	now = now.Add(11 * time.Minute)
	if got, err := s.OAuthConnectFlow(f.ID, b[:]); !errors.Is(err, ErrStateExpired) || got.TenantID != tid {
		t.Fatalf("expired: %+v %v", got, err)
	}
	if st, _ := s.OAuthFlow(tid, f.ID); st.Status != FlowPending {
		t.Fatalf("a look expired the flow: %s", st.Status)
	}
	if _, err := s.FinishOAuthFlow(tid, f.ID, FlowFailed, "", "x"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OAuthConnectFlow(f.ID, b[:]); !errors.Is(err, ErrStateUsed) || got.ID != f.ID {
		t.Fatalf("finished: %+v %v", got, err)
	}
	// A flow without a connect link has no page: nothing about it is told.
	f2, _ := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExternalUserID: "eu1", ExpiresAt: now.Add(10 * time.Minute)}, State: "state-gggggggggggggggg"})
	if got, err := s.OAuthConnectFlow(f2.ID, nil); !errors.Is(err, ErrNotFound) || got.ID != "" || got.TenantID != "" {
		t.Fatalf("no link: %+v %v", got, err)
	}
}

// connectFlow creates a flow of end-user eu1 with a connect link, for
// state, expiring 10 minutes after now; it returns the flow and its
// authorize URL.
func connectFlow(t *testing.T, s *Store, tid string, now time.Time, state string) (OAuthFlow, string) {
	t.Helper()
	au := "https://provider.test/authorize?state=" + state
	f, err := s.CreateOAuthFlow(tid, OAuthFlowInput{Flow: OAuthFlow{Provider: "x", ExternalUserID: "eu1", ExpiresAt: now.Add(10 * time.Minute)},
		State: state, AuthorizeURL: au})
	if err != nil {
		t.Fatal(err)
	}
	return f, au
}

// A press binds the flow to the fresh nonce hash minted for it, never to
// the one the browser presented; presenting the fresh one is the same
// browser again (no write), presenting the old one is another browser.
func TestOAuthConnectBindsFresh(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	f, au := connectFlow(t, s, tid, now, "state-eeeeeeeeeeeeeeee")
	planted, fresh, other := sha256.Sum256([]byte("planted")), sha256.Sum256([]byte("fresh")), sha256.Sum256([]byte("other"))
	if _, _, _, err := s.BindOAuthConnect(f.ID, planted[:], nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no fresh hash: %v", err)
	}
	if _, u, bound, err := s.BindOAuthConnect(f.ID, planted[:], fresh[:]); err != nil || !bound || u != au {
		t.Fatalf("first press: %q %v %v", u, bound, err)
	}
	if _, _, _, err := s.BindOAuthConnect(f.ID, planted[:], other[:]); !errors.Is(err, ErrConnectOpened) {
		t.Fatalf("the presented hash again: %v", err)
	}
	if _, err := s.OAuthConnectFlow(f.ID, planted[:]); !errors.Is(err, ErrConnectOpened) {
		t.Fatalf("look with the presented hash: %v", err)
	}
	if _, u, bound, err := s.BindOAuthConnect(f.ID, fresh[:], other[:]); err != nil || bound || u != au {
		t.Fatalf("the bound browser again: %q %v %v", u, bound, err)
	}
	if _, _, err := s.OpenOAuthConnect(f.ID, fresh[:]); err != nil {
		t.Fatalf("open by the bound browser: %v", err)
	}
}

// Branding takes button_label (plain text, 1 to 64 characters) and
// primary_color (#rrggbb) only; an error names the key; a refused write
// leaves the override as it was.
func TestOAuthOverrideBranding(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, tid := openOAuthTest(t, &now)
	ok := map[string]string{"button_label": "Link your GitHub", "primary_color": "#0A7cff"}
	if _, err := s.PutOAuthOverride(tid, "github", OAuthOverrideInput{ClientID: "cid", DisplayName: "Acme", Branding: ok}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		branding map[string]string
		display  string
		field    string
	}{
		{map[string]string{"logo": "x"}, "", "branding: unknown key"},
		{map[string]string{"button_label": "ok", "zz\xff": "x"}, "", "branding: unknown key"},
		{map[string]string{"primary_color": "#12345g"}, "", "branding.primary_color:"},
		{map[string]string{"primary_color": "rgb(1,2,3)"}, "", "branding.primary_color:"},
		{map[string]string{"primary_color": ""}, "", "branding.primary_color:"},
		{map[string]string{"button_label": ""}, "", "branding.button_label:"},
		{map[string]string{"button_label": "a\tb"}, "", "branding.button_label:"},
		{map[string]string{"button_label": "\u2066x"}, "", "branding.button_label:"},
		{map[string]string{"button_label": "bad \xff"}, "", "branding.button_label:"},
		{map[string]string{"button_label": strings.Repeat("x", 65)}, "", "branding.button_label:"},
		{nil, "A\u202eB", "display_name:"},
	} {
		_, err := s.PutOAuthOverride(tid, "github", OAuthOverrideInput{ClientID: "cid2", DisplayName: c.display, Branding: c.branding})
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%q %q: %v (want %s)", c.branding, c.display, err, c.field)
		}
	}
	o, err := s.OAuthOverride(tid, "github")
	if err != nil || o.ClientID != "cid" || o.Branding["primary_color"] != "#0A7cff" || o.DisplayName != "Acme" {
		t.Fatalf("%+v %v", o, err)
	}
}
