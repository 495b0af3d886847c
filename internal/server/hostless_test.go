package server

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/vaulttest"
	"github.com/egressd/egressd/vault"
)

// Regression: serve said nothing of the secrets stored without hosts,
// which now stop resolving; it logs their count, and nothing when none.
func TestWarnHostlessSecrets(t *testing.T) {
	path, key := filepath.Join(t.TempDir(), "v.db"), vault.NewMasterKey()
	open := func() *vault.Store {
		s, err := vault.Open(vault.Config{Path: path, MasterKey: key, NoSync: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	tn, _, err := s.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		res, err := s.UpsertSecret(tn.ID, vault.SecretInput{Name: name, Value: "v-" + name, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Secret.ID)
	}
	var out bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	warnHostlessSecrets(log, s)
	if out.Len() != 0 {
		t.Fatalf("logged with every secret holding hosts: %s", out.String())
	}
	s.Close()
	vaulttest.StripAllowedHosts(t, path, ids[0], ids[2])
	s = open()
	defer s.Close()
	warnHostlessSecrets(log, s)
	if got := out.String(); !strings.Contains(got, `"level":"WARN"`) || !strings.Contains(got, `"count":2`) || !strings.Contains(got, "allowed_hosts") || strings.Contains(got, "v-a") {
		t.Fatalf("log: %s", got)
	}
}
