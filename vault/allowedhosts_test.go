package vault

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestNormalizeSecretHost(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"api.openai.com", "api.openai.com", true},
		{"*.example.com", "*.example.com", true},
		{"*.example.co.uk", "*.example.co.uk", true},
		{"*.user.github.io", "*.user.github.io", true}, // one owner's site
		{"*.corp.internal", "*.corp.internal", true},
		{"github.io", "github.io", true}, // an exact host, not a wildcard
		{"10.0.0.1", "10.0.0.1", true},
		{"*", AnyHost, true},
		{" * ", AnyHost, true},
		// Regression: a wildcard over a public suffix matches hosts of
		// unrelated owners.
		{"*.co.uk", "", false},             // ICANN section
		{"*.github.io", "", false},         // private section
		{"*.googleapis.com", "", false},    // private section
		{"*.s3.amazonaws.com", "", false},  // private section, two labels
		{"*.x.kawasaki.jp", "", false},     // a "*.kawasaki.jp" rule of the list
		{"*.Co.UK.", "", false},            // after normalizing
		{"*.com", "", false},               // a top-level domain
		{"*.unknowntld", "", false},        // one label
		{"**", "", false},                  // not a pattern
		{"*.*.example.com", "", false},     // not a pattern
		{"https://a.example", "", false},   // not a host
		{"api.example.com:443", "", false}, // not a host
	} {
		got, err := NormalizeSecretHost(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("NormalizeSecretHost(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

// Regression: allow_any_host_secrets (default off) is what lets a secret
// take ["*"]; its change is an admin audit row naming it.
func TestAnyHostSecrets(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	if tn.Settings.AllowAnyHostSecrets {
		t.Fatal("a new tenant allows any-host secrets")
	}
	in := SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"*"}}
	if err := s.CheckSecretInput(tn.ID, in); !errors.Is(err, ErrForbidden) {
		t.Fatalf("check with the setting off: %v, want ErrForbidden", err)
	}
	a := s.As(Actor{Kind: ActorCLI, ID: "ops"})
	st, err := a.UpdateSettings(tn.ID, SettingsPatch{AllowAnyHostSecrets: ptr(true)})
	if err != nil || !st.AllowAnyHostSecrets || !st.AllowEndUserCredentials {
		t.Fatalf("patch: %+v %v", st, err)
	}
	rows := adminRows(t, s, tn.ID)
	if last := rows[len(rows)-1]; last.Action != ActionSettingsChanged || last.Details["changed"] != "allow_any_host_secrets" {
		t.Fatalf("audit row %+v", last)
	}
	if err := s.CheckSecretInput(tn.ID, in); err != nil {
		t.Fatalf("check with the setting on: %v", err)
	}
	sec := mustUpsert(t, s, tn.ID, in).Secret
	if !reflect.DeepEqual(sec.AllowedHosts, []string{AnyHost}) || !AnyHostAllowed(sec.AllowedHosts) {
		t.Fatalf("hosts %q", sec.AllowedHosts)
	}
	if _, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowAnyHostSecrets: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	// Off again: a new upsert of it is refused, the stored one stays as
	// it is (the resolver's walk no longer lets it resolve).
	checkRefusals(t, s, tn.ID, []refusal{{"any host once the setting is off again", "allowed_hosts", ErrForbidden, func() error {
		_, err := s.UpsertSecret(tn.ID, in)
		return err
	}}})
}

// stripHosts rewrites a stored secret's row as a version that took no
// allowed_hosts as "any host" wrote it.
func stripHosts(t *testing.T, s *Store, tenantID, id string) {
	t.Helper()
	editRow(t, s, key(tenantID, id), func(row map[string]json.RawMessage) { delete(row, "allowed_hosts") })
}

// Regression: secrets stored without hosts by older versions are counted
// (serve warns about them), read back with none, and cannot be stored
// again without hosts.
func TestSecretsWithoutHosts(t *testing.T) {
	s := openTest(t)
	a, b := mustTenant(t, s, "a"), mustTenant(t, s, "b")
	hosts := []string{"api.example.com"}
	old1 := mustUpsert(t, s, a.ID, SecretInput{Name: "old", Value: "v", Scope: ScopeTenant, AllowedHosts: hosts}).Secret
	old2 := mustUpsert(t, s, b.ID, SecretInput{Name: "old", Value: "v", Scope: ScopeTenant, AllowedHosts: hosts}).Secret
	mustUpsert(t, s, b.ID, SecretInput{Name: "new", Value: "v", Scope: ScopeTenant, AllowedHosts: hosts})
	if n, err := s.SecretsWithoutHosts(); err != nil || n != 0 {
		t.Fatalf("before: %d %v", n, err)
	}
	stripHosts(t, s, a.ID, old1.ID)
	stripHosts(t, s, b.ID, old2.ID)
	if n, err := s.SecretsWithoutHosts(); err != nil || n != 2 {
		t.Fatalf("with two old rows: %d %v, want 2", n, err)
	}
	if got, err := s.Secret(a.ID, old1.ID); err != nil || len(got.AllowedHosts) != 0 {
		t.Fatalf("old row read back: %+v %v", got, err)
	}
	checkRefusals(t, s, a.ID, []refusal{{"store the old one again without hosts", "allowed_hosts", ErrInvalid, func() error {
		_, err := s.UpsertSecret(a.ID, SecretInput{Name: "old", Value: "v2", Scope: ScopeTenant})
		return err
	}}})
	mustUpsert(t, s, a.ID, SecretInput{Name: "old", Value: "v2", Scope: ScopeTenant, AllowedHosts: hosts})
	if n, err := s.SecretsWithoutHosts(); err != nil || n != 1 {
		t.Fatalf("after one was stored again with hosts: %d %v, want 1", n, err)
	}
}
