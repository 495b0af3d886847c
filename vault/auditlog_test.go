package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// TestAuditHoldsNoValue stores secrets, rotates them, runs every audited
// write and appends request rows, then looks for every value and refresh
// token in every row and in the raw file.
func TestAuditHoldsNoValue(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	a := s.As(Actor{Kind: ActorAPIKey, ID: "key_1"})
	sbx, proxyToken, err := a.CreateSandbox(tn.ID, SandboxInput{ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	values := []string{"sk-PLAINTEXT-aaaa-0001", "rt-PLAINTEXT-bbbb-0002", "sk-PLAINTEXT-cccc-0003", "PLAINTEXT-dddd-0004", proxyToken}
	r1, err := a.UpsertSecret(tn.ID, SecretInput{Name: "openai", Value: values[0], RefreshToken: values[1], Scope: ScopeTenant, ResourceID: sbx.ID, ExposeAsEnv: "OPENAI", AllowedHosts: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RotateSecret(tn.ID, r1.Secret.ID, RotateInput{Value: values[2]}); err != nil {
		t.Fatal(err)
	}
	r2, err := a.UpsertSecret(tn.ID, SecretInput{Name: "res", Value: values[3], Scope: ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	browserToken, _, err := a.CreateAPIKey(tn.ID, KeyBrowser, "eu1", 0)
	if err != nil {
		t.Fatal(err)
	}
	values = append(values, browserToken)
	if _, err := a.SetDisabled(tn.ID, r2.Secret.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateSettings(tn.ID, SettingsPatch{CABundlePath: ptr("/ca.pem")}); err != nil {
		t.Fatal(err)
	}
	row := audit.Row{Kind: audit.KindRequest, TenantID: tn.ID, SandboxID: sbx.ID, SecretID: r1.Secret.ID, Host: "api.example.com", Method: "GET", Outcome: "substituted"}
	row.Path = "/v1/models?api_key=" + values[2]
	if err := s.AppendAudit(row); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteSandbox(tn.ID, sbx.ID); err != nil {
		t.Fatal(err)
	}
	var rows []audit.Row
	if err := s.ExportAudit("", time.Time{}, func(r audit.Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 8 {
		t.Fatalf("only %d rows", len(rows))
	}
	text, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := storeDump(t, path)
	for _, v := range values {
		if bytes.Contains(text, []byte(v)) {
			t.Errorf("an audit row holds %q", v)
		}
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("the file holds %q", v)
		}
	}
}

// `vault rekey` (the server stopped) leaves the audit journal alone: the
// rows a node journaled and could not ship (its store's commits failing
// until it stopped) go into the vault at the next Open, with the new key.
func TestAuditJournalRekey(t *testing.T) {
	path, key := filepath.Join(t.TempDir(), "vault.db"), NewMasterKey()
	s := openAt(t, path, key, true)
	needBoltFile(t, s) // Rekey re-wraps a bbolt file
	row := func(i int) audit.Row {
		return audit.Row{Kind: audit.KindRequest, TenantID: "ten_j", SandboxID: "sbx_1", Outcome: "substituted", Status: 200 + i}
	}
	if err := s.AppendAudit(row(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A node whose store refuses every commit: its rows stay in the
	// journal, which its Close does not rewind.
	b := openBoltTestBackend(t, Config{Path: path, Timeout: time.Second, NoSync: true})
	l, err := audit.Open(audit.Config{Backend: refusingUpdates{b}, JournalPath: path + ".audit-journal", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(row(1), row(2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, errRefused) {
		t.Fatalf("close: %v, want the refused commit", err)
	}
	b.Close()
	before, err := os.ReadFile(path + ".audit-journal")
	if err != nil {
		t.Fatal(err)
	}
	newKey := NewMasterKey()
	if _, err := Rekey(path, key, newKey, time.Second); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path + ".audit-journal"); !bytes.Equal(before, after) {
		t.Fatal("rekey changed the journal")
	}
	s = openAt(t, path, newKey, true)
	rows, _, err := s.QueryAudit("ten_j", audit.Filter{Kind: audit.KindRequest})
	if err != nil || len(rows) != 3 {
		t.Fatalf("%d rows (%v), want 3", len(rows), err)
	}
}

var errRefused = errors.New("test: commit refused")

// refusingUpdates fails every write transaction of its backend.
type refusingUpdates struct{ storage.Backend }

func (refusingUpdates) Update(func(storage.Tx) error) error { return errRefused }
func (refusingUpdates) Batch(func(storage.Tx) error) error  { return errRefused }
