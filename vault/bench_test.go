package vault

import (
	"fmt"
	"testing"
)

// BenchmarkUpsertSecret measures one upsert (seal under a fresh data key,
// wrap, one bbolt commit) of an existing secret, with fsync on commit as in
// production and without.
func BenchmarkUpsertSecret(b *testing.B) {
	for _, c := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := openTest(b, func(cfg *Config) { cfg.NoSync = c.noSync })
			tn := mustTenant(b, s, "acme")
			in := SecretInput{Name: "openai", Value: "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz", Scope: ScopeTenant, AllowedHosts: []string{"api.openai.com"}}
			// Other secrets of the tenant, so the tree is not trivial.
			for i := range 200 {
				mustUpsert(b, s, tn.ID, SecretInput{Name: fmt.Sprintf("s%d", i), Value: "v", Scope: ScopeUser, OwnerUserID: fmt.Sprintf("u%d", i), AllowedHosts: []string{"api.example.com"}})
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.UpsertSecret(tn.ID, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenValue measures the cold path of a resolve: one read
// transaction, the row's JSON, the data key's unwrap and the decryption.
func BenchmarkOpenValue(b *testing.B) {
	s := openTest(b)
	tn := mustTenant(b, s, "acme")
	var id string
	for i := range 200 {
		sec := mustUpsert(b, s, tn.ID, SecretInput{Name: fmt.Sprintf("s%d", i), Value: "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
		if i == 100 {
			id = sec.ID
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		err := s.Read(func(r *Reader) error {
			v, _, _, err := r.OpenValue(tn.ID, id)
			if err == nil && v.Len() == 0 {
				b.Fatal("empty value")
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateSandbox measures the check on every proxied
// connection: owner lookup, the row and a constant-time hash compare.
func BenchmarkAuthenticateSandbox(b *testing.B) {
	s := openTest(b)
	tn := mustTenant(b, s, "acme")
	var id, token string
	for i := range 200 {
		sbx, tok := mustSandbox(b, s, tn.ID, SandboxInput{OwnerUserID: fmt.Sprint(i), ExternalUserID: "eu", Metadata: map[string]string{"k": "v"}})
		if i == 100 {
			id, token = sbx.ID, tok
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AuthenticateSandbox(id, token); err != nil {
			b.Fatal(err)
		}
	}
}
