package vault

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTenants(t *testing.T) {
	s := openTest(t)
	a, created, err := s.EnsureTenant(" acme ")
	if err != nil || !created || a.Name != "acme" || !a.Settings.AllowEndUserCredentials || !strings.HasPrefix(a.ID, "ten_") {
		t.Fatalf("ensure: %+v %v %v", a, created, err)
	}
	again, created, err := s.EnsureTenant("acme")
	if err != nil || created || again.ID != a.ID {
		t.Fatalf("second ensure: %+v %v %v", again, created, err)
	}
	b, token, err := s.CreateTenant("beta")
	if err != nil || !strings.HasPrefix(token, "egk_") {
		t.Fatalf("create: %+v %q %v", b, token, err)
	}
	if k, err := s.Authenticate(token); err != nil || k.TenantID != b.ID || k.Kind != KeyAdmin {
		t.Fatalf("first key: %+v %v", k, err)
	}
	if got, err := s.Tenant(b.ID); err != nil || got.Name != "beta" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, err := s.Tenant("ten_nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	checkRefusals(t, s, a.ID, []refusal{
		{"create existing", "", ErrConflict, func() error { _, _, err := s.CreateTenant("acme"); return err }},
		{"empty name", "name", ErrInvalid, func() error { _, _, err := s.CreateTenant("  "); return err }},
		{"long name", "name", ErrInvalid, func() error { _, _, err := s.CreateTenant(strings.Repeat("n", MaxTenantName+1)); return err }},
		{"NUL in name", "name", ErrInvalid, func() error { _, _, err := s.EnsureTenant("a\x00b"); return err }},
		{"not UTF-8", "name", ErrInvalid, func() error { _, _, err := s.EnsureTenant("\xff"); return err }},
	})
	if all, _ := s.Tenants(); len(all) != 2 {
		t.Fatalf("%d tenants", len(all))
	}
}

func TestSettings(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	off := false
	st, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &off})
	if err != nil || st.AllowEndUserCredentials || st.CABundlePath != "" {
		t.Fatalf("patch 1: %+v %v", st, err)
	}
	st, err = s.UpdateSettings(tn.ID, SettingsPatch{CABundlePath: ptr("/ca.pem")})
	if err != nil || st.AllowEndUserCredentials || st.CABundlePath != "/ca.pem" {
		t.Fatalf("patch 2 lost patch 1: %+v %v", st, err)
	}
	st, err = s.UpdateSettings(tn.ID, SettingsPatch{CABundlePath: ptr("")})
	if err != nil || st.CABundlePath != "" {
		t.Fatalf("clear: %+v %v", st, err)
	}
	if got, _ := s.Tenant(tn.ID); !reflect.DeepEqual(got.Settings, st) {
		t.Fatalf("stored %+v, returned %+v", got.Settings, st)
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"relative path", "ca_bundle_path", ErrInvalid, func() error {
			_, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &off, CABundlePath: ptr("ca.pem")})
			return err
		}},
		{"newline in path", "ca_bundle_path", ErrInvalid, func() error {
			_, err := s.UpdateSettings(tn.ID, SettingsPatch{CABundlePath: ptr("/a\nb")})
			return err
		}},
	})
}

func TestAuthenticate(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	tn := mustTenant(t, s, "acme")
	admin, ak, err := s.CreateAPIKey(tn.ID, KeyAdmin, "", 0)
	if err != nil || ak.ExpiresAt != nil || ak.TenantID != tn.ID {
		t.Fatalf("admin key: %+v %v", ak, err)
	}
	browser, bk, err := s.CreateAPIKey(tn.ID, KeyBrowser, "eu1", time.Hour)
	if err != nil || bk.ExpiresAt == nil || !bk.ExpiresAt.Equal(clock.Now().Add(time.Hour)) || !strings.HasPrefix(browser, "egb_") {
		t.Fatalf("browser key: %+v %v", bk, err)
	}
	if k, err := s.Authenticate(browser); err != nil || k.ID != bk.ID || k.ExternalUserID != "eu1" || k.Kind != KeyBrowser {
		t.Fatalf("fresh browser key: %+v %v", k, err)
	}
	clock.Advance(time.Hour - time.Nanosecond)
	if _, err := s.Authenticate(browser); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	clock.Advance(time.Nanosecond)
	if _, err := s.Authenticate(browser); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("at expiry: %v", err)
	}
	clock.Advance(24 * time.Hour)
	if _, err := s.Authenticate(browser); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after expiry: %v", err)
	}
	if k, err := s.Authenticate(admin); err != nil || k.ID != ak.ID {
		t.Fatalf("a key without ttl expired: %v", err)
	}
	for name, tok := range map[string]string{
		"empty": "", "unknown": "egk_" + strings.Repeat("A", 40), "prefix": admin[:len(admin)-1],
		"longer": admin + "A", "huge": strings.Repeat("x", 10000), "space": " " + admin,
	} {
		if k, err := s.Authenticate(tok); !errors.Is(err, ErrUnauthenticated) || k.ID != "" {
			t.Errorf("%s: %+v %v", name, k, err)
		}
	}
	op, err := s.EnsureOperatorKey()
	if err != nil || !strings.HasPrefix(op, "ego_") {
		t.Fatalf("operator: %q %v", op, err)
	}
	if k, err := s.Authenticate(op); err != nil || k.Kind != KeyOperator || k.TenantID != "" {
		t.Fatalf("operator key: %+v %v", k, err)
	}
	if again, err := s.EnsureOperatorKey(); err != nil || again != "" {
		t.Fatalf("second operator key: %q %v", again, err)
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"browser without user", "external_user_id", ErrInvalid, func() error { _, _, err := s.CreateAPIKey(tn.ID, KeyBrowser, "", 0); return err }},
		{"operator kind", "kind", ErrInvalid, func() error { _, _, err := s.CreateAPIKey(tn.ID, KeyOperator, "", 0); return err }},
		{"unknown kind", "kind", ErrInvalid, func() error { _, _, err := s.CreateAPIKey(tn.ID, "root", "", 0); return err }},
		{"unknown tenant", "", ErrNotFound, func() error { _, _, err := s.CreateAPIKey("ten_nope", KeyAdmin, "", 0); return err }},
	})
}
