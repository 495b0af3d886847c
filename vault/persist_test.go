package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// world is a store filled with one of every kind of record, and what each
// write acknowledged.
type world struct {
	tenant, other       Tenant
	adminToken, opToken string
	browserToken        string
	browserKey          APIKey
	sbx, cmp            Sandbox
	sbxToken, cmpToken  string
	secrets             map[string]Secret // by name
	values              map[string]string // secret id → value
	refresh             map[string]string // secret id → refresh token
	bindings            []Binding
	placeholders        map[string]string
	settings            Settings
	plaintexts          []string // every value and refresh token ever stored
}

func fill(t *testing.T, s *Store) *world {
	t.Helper()
	w := &world{secrets: map[string]Secret{}, values: map[string]string{}, refresh: map[string]string{}}
	var err error
	if w.tenant, w.adminToken, err = s.CreateTenant("acme"); err != nil {
		t.Fatal(err)
	}
	w.other = mustTenant(t, s, "other")
	if w.opToken, err = s.EnsureOperatorKey(); err != nil || w.opToken == "" {
		t.Fatalf("operator key: %q %v", w.opToken, err)
	}
	if w.browserToken, w.browserKey, err = s.CreateAPIKey(w.tenant.ID, KeyBrowser, "eu1", time.Hour); err != nil {
		t.Fatal(err)
	}
	no := false
	if w.settings, err = s.UpdateSettings(w.tenant.ID, SettingsPatch{AllowEndUserCredentials: &no, CABundlePath: ptr("/etc/egressd/ca.pem")}); err != nil {
		t.Fatal(err)
	}
	w.sbx, w.sbxToken = mustSandbox(t, s, w.tenant.ID, SandboxInput{Name: "box", OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1", Metadata: map[string]string{"k": "v"}})
	w.cmp, w.cmpToken = mustSandbox(t, s, w.tenant.ID, SandboxInput{ResourceType: ResourceComputer, OwnerUserID: "u2"})
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(in SecretInput) Secret {
		res := mustUpsert(t, s, w.tenant.ID, in)
		w.secrets[in.Name] = res.Secret
		w.values[res.Secret.ID] = in.Value
		w.refresh[res.Secret.ID] = in.RefreshToken
		w.plaintexts = append(w.plaintexts, in.Value)
		if in.RefreshToken != "" {
			w.plaintexts = append(w.plaintexts, in.RefreshToken)
		}
		if res.Binding != nil {
			w.bindings = append(w.bindings, *res.Binding)
		}
		return res.Secret
	}
	put(SecretInput{Name: "openai", Value: "sk-proj-PLAINTEXT-openai-0001", Scope: ScopeTenant, AllowedHosts: []string{"api.openai.com"}, PlaceholderPrefix: "sk-proj-", Metadata: map[string]string{"team": "ml"}})
	put(SecretInput{Name: "gh", Value: "ghp_PLAINTEXT-github-0002", Scope: ScopeUser, OwnerUserID: "u1", Type: "oauth_token", RefreshToken: "ghr_PLAINTEXT-refresh-0003", ExpiresAt: &exp, AllowedHosts: []string{"api.example.com"}})
	put(SecretInput{Name: "ws", Value: "PLAINTEXT-workspace-0004", Scope: ScopeWorkspace, WorkspaceID: "w1", SubstituteIn: []Location{InBody, InHeader}, AllowedHosts: []string{"api.example.com"}})
	put(SecretInput{Name: "ew", Value: "PLAINTEXT-extws-0005", Scope: ScopeExternalWorkspace, ExternalWorkspaceID: "ew1", AllowedHosts: []string{"api.example.com"}})
	put(SecretInput{Name: "res", Value: "PLAINTEXT-resource-0006", Scope: ScopeResource, ResourceID: w.sbx.ID, ExposeAsEnv: "RES_KEY", AllowedHosts: []string{"api.example.com"}})
	put(SecretInput{Name: "bound", Value: "PLAINTEXT-bound-0007", Scope: ScopeTenant, ResourceID: w.cmp.ID, ResourceType: ResourceComputer, ExposeAsEnv: "BOUND", AllowedHosts: []string{"api.example.com"}})
	// A second version of gh, and a disabled one.
	put(SecretInput{Name: "gh", Value: "ghp_PLAINTEXT-github-v2-0008", Scope: ScopeUser, OwnerUserID: "u1", Type: "oauth_token", RefreshToken: "ghr_PLAINTEXT-refresh-v2-0009", AllowedHosts: []string{"api.example.com"}})
	rot, err := s.RotateSecret(w.tenant.ID, w.secrets["ws"].ID, RotateInput{Value: "PLAINTEXT-workspace-v2-0010"})
	if err != nil {
		t.Fatal(err)
	}
	w.secrets["ws"], w.values[rot.ID] = rot, "PLAINTEXT-workspace-v2-0010"
	w.plaintexts = append(w.plaintexts, "PLAINTEXT-workspace-v2-0010")
	if w.secrets["ew"], err = s.SetDisabled(w.tenant.ID, w.secrets["ew"].ID, true); err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateBinding(w.tenant.ID, BindingInput{SecretID: w.secrets["openai"].ID, ResourceID: w.sbx.ID, ExposeAsEnv: "OPENAI_API_KEY"})
	if err != nil {
		t.Fatal(err)
	}
	w.bindings = append(w.bindings, b)
	if w.placeholders, err = s.EnsurePlaceholders(w.tenant.ID, w.sbx.ID, map[string]string{"openai": "sk-proj-", "gh": ""}); err != nil {
		t.Fatal(err)
	}
	// Refresh the listed metadata: upserts and rotations changed versions.
	for name, sec := range w.secrets {
		if w.secrets[name], err = s.Secret(w.tenant.ID, sec.ID); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func ptr[T any](v T) *T { return &v }

// check verifies that s holds everything w acknowledged.
func (w *world) check(t *testing.T, s *Store) {
	t.Helper()
	tn, err := s.Tenant(w.tenant.ID)
	if err != nil || tn.Name != "acme" || !reflect.DeepEqual(tn.Settings, w.settings) {
		t.Errorf("tenant: %+v %v, want settings %+v", tn, err, w.settings)
	}
	if all, _ := s.Tenants(); len(all) != 2 {
		t.Errorf("tenants: %d, want 2", len(all))
	}
	for tok, kind := range map[string]KeyKind{w.adminToken: KeyAdmin, w.opToken: KeyOperator, w.browserToken: KeyBrowser} {
		k, err := s.Authenticate(tok)
		if err != nil || k.Kind != kind {
			t.Errorf("key %s: %+v %v", kind, k, err)
		}
	}
	if k, _ := s.Authenticate(w.browserToken); k.ExternalUserID != "eu1" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(*w.browserKey.ExpiresAt) {
		t.Errorf("browser key: %+v", k)
	}
	for _, sec := range w.secrets {
		got, err := s.Secret(w.tenant.ID, sec.ID)
		if err != nil || !reflect.DeepEqual(got, sec) {
			t.Errorf("secret %s:\n got %+v %v\nwant %+v", sec.Name, got, err, sec)
		}
		v, rt, ver, err := openValue(s, w.tenant.ID, sec.ID)
		if err != nil || v != w.values[sec.ID] || rt != w.refresh[sec.ID] || ver != sec.Version {
			t.Errorf("secret %s: value ok=%v refresh ok=%v version %d (want %d) %v", sec.Name, v == w.values[sec.ID], rt == w.refresh[sec.ID], ver, sec.Version, err)
		}
	}
	if w.secrets["gh"].Version != 2 || w.secrets["ws"].Version != 2 || !w.secrets["ew"].Disabled {
		t.Errorf("versions or disabled state lost: %+v", w.secrets)
	}
	secs, _ := s.ListSecrets(w.tenant.ID, SecretFilter{})
	if len(secs) != len(w.secrets) {
		t.Errorf("%d secrets listed, want %d", len(secs), len(w.secrets))
	}
	bs, _ := s.ListBindings(w.tenant.ID, BindingFilter{})
	if len(bs) != len(w.bindings) {
		t.Errorf("%d bindings, want %d", len(bs), len(w.bindings))
	}
	for _, b := range w.bindings {
		if got, err := s.Binding(w.tenant.ID, b.ID); err != nil || !reflect.DeepEqual(got, b) {
			t.Errorf("binding %s: %+v %v, want %+v", b.ID, got, err, b)
		}
	}
	for _, x := range []struct {
		sbx   Sandbox
		token string
	}{{w.sbx, w.sbxToken}, {w.cmp, w.cmpToken}} {
		got, err := s.Sandbox(w.tenant.ID, x.sbx.ID)
		if err != nil || !reflect.DeepEqual(got, x.sbx) {
			t.Errorf("sandbox: %+v %v, want %+v", got, err, x.sbx)
		}
		if got, err := s.AuthenticateSandbox(x.sbx.ID, x.token); err != nil || got.ID != x.sbx.ID {
			t.Errorf("sandbox token: %v", err)
		}
	}
	again, err := s.EnsurePlaceholders(w.tenant.ID, w.sbx.ID, map[string]string{"openai": "sk-proj-", "gh": ""})
	if err != nil || !reflect.DeepEqual(again, w.placeholders) {
		t.Errorf("placeholders: %v %v, want %v", again, err, w.placeholders)
	}
	for name, text := range w.placeholders {
		p, err := s.LookupPlaceholder(text)
		if err != nil || p.SandboxID != w.sbx.ID || p.Name != name || p.TenantID != w.tenant.ID {
			t.Errorf("lookup %s: %+v %v", name, p, err)
		}
	}
}

func TestReopenKeepsEveryWrite(t *testing.T) {
	s := openTest(t, func(c *Config) { c.NoSync = false })
	key := s.key
	w := fill(t, s)
	w.check(t, s)
	before := dump(t, s)
	s = reopen(t, s, key)
	w.check(t, s)
	if after := dump(t, s); !reflect.DeepEqual(before, after) {
		t.Errorf("reopening changed the file's content")
	}
	// And a key parsed from its file form opens it as well.
	path := filepath.Join(t.TempDir(), "master.key")
	if err := WriteMasterKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	k2, err := LoadMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, k2)
	w.check(t, s)
}

func TestOpenWrongMasterKey(t *testing.T) {
	s := openTest(t)
	key := s.key
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "a", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	path := s.Path()
	s.Close()
	before := storeDump(t, path)
	wrong := NewMasterKey()
	cfg := Config{Path: path, MasterKey: wrong, Timeout: time.Second}
	cfg.Backend = newTestBackend(t, cfg)
	s2, err := Open(cfg)
	if !errors.Is(err, ErrWrongMasterKey) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("open with wrong key: %v, want ErrWrongMasterKey", err)
	}
	cfg.Backend.Close() // a failed Open leaves it to its caller
	msg := err.Error()
	for _, want := range []string{"master key", key.ID(), wrong.ID()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if after := storeDump(t, path); !bytes.Equal(before, after) {
		t.Error("a failed open changed the store")
	}
	// The failed open released the file, and the right key still opens it.
	cfg = Config{Path: path, MasterKey: key, Timeout: time.Second}
	cfg.Backend = newTestBackend(t, cfg)
	s3, err := Open(cfg)
	if err != nil {
		cfg.Backend.Close()
		t.Fatalf("open with the right key after a wrong one: %v", err)
	}
	defer s3.Close()
	if v := mustOpenValue(t, s3, tn.ID, sec.ID); v != "v" {
		t.Fatalf("value %q", v)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	s := openTest(t)
	needBoltFile(t, s) // the file's lock: a shared store has none
	start := time.Now()
	s2, err := Open(Config{Path: s.Path(), MasterKey: s.key, Timeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of an open vault succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %v", d)
	}
	if !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("message does not say what to do: %v", err)
	}
	if _, err := Rekey(s.Path(), s.key, NewMasterKey(), 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("rekey of an open vault: %v, want ErrLocked", err)
	}
	// The store is still usable.
	mustTenant(t, s, "still-works")
}

func TestRekey(t *testing.T) {
	s := openTest(t)
	needBoltFile(t, s) // Rekey re-wraps a bbolt file; the cluster's rekey is not built yet
	oldKey := s.key
	w := fill(t, s)
	path := s.Path()
	s.Close()

	newKey := NewMasterKey()
	res, err := Rekey(path, oldKey, newKey, time.Second)
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	if res.Secrets != len(w.secrets) || res.OldKeyID != oldKey.ID() || res.NewKeyID != newKey.ID() {
		t.Errorf("result %+v, want %d secrets", res, len(w.secrets))
	}
	if s2, err := Open(Config{Path: path, MasterKey: oldKey, Timeout: time.Second}); !errors.Is(err, ErrWrongMasterKey) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("old key after rekey: %v, want ErrWrongMasterKey", err)
	}
	s3, err := Open(Config{Path: path, MasterKey: newKey, Timeout: time.Second})
	if err != nil {
		t.Fatalf("new key after rekey: %v", err)
	}
	defer s3.Close()
	w.check(t, s3)
	// Every row is wrapped by the new key now: the old one opens none.
	err = s3.Read(func(r *Reader) error {
		r.s = &Store{core: &core{keys: mustRing(t, oldKey)}}
		for _, sec := range w.secrets {
			if _, _, _, err := r.OpenValue(w.tenant.ID, sec.ID); !errors.Is(err, ErrWrongMasterKey) {
				t.Errorf("%s opens with the old key: %v", sec.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertNoPlaintext(t, path, w.plaintexts, oldKey, newKey)
}

func TestRekeyRefusals(t *testing.T) {
	s := openTest(t)
	needBoltFile(t, s) // Rekey re-wraps a bbolt file; the cluster's rekey is not built yet
	key := s.key
	w := fill(t, s)
	path := s.Path()
	s.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		after, _ := os.ReadFile(path)
		if !bytes.Equal(before, after) {
			t.Fatalf("%s changed the file", what)
		}
	}
	if _, err := Rekey(path, NewMasterKey(), NewMasterKey(), time.Second); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("rekey with a wrong old key: %v, want ErrWrongMasterKey", err)
	}
	unchanged("a rekey with the wrong old key")
	if _, err := Rekey(path, key, key, time.Second); err == nil {
		t.Fatal("rekey to the same key succeeded")
	}
	unchanged("a rekey to the same key")
	// Not a vault: nothing is created where nothing was.
	missing := filepath.Join(t.TempDir(), "nope.db")
	if _, err := Rekey(missing, key, NewMasterKey(), time.Second); err == nil {
		t.Fatal("rekey of a missing file succeeded")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("rekey of a missing file created it: %v", err)
	}
	s2, err := Open(Config{Path: path, MasterKey: key, Timeout: time.Second})
	if err != nil {
		t.Fatalf("old key after failed rekeys: %v", err)
	}
	defer s2.Close()
	w.check(t, s2)
}

// assertNoPlaintext searches the raw file for every plaintext, in the forms
// an encoder could leave it: as is, base64 (at every alignment, both
// alphabets) and hex; and for the master keys.
func assertNoPlaintext(t *testing.T, path string, plaintexts []string, keys ...*MasterKey) {
	t.Helper()
	raw := storeDump(t, path)
	if len(raw) == 0 {
		t.Fatal("empty file")
	}
	for _, p := range plaintexts {
		for _, form := range encodings([]byte(p)) {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("the file holds %q (as %q)", p, form)
			}
		}
	}
	for _, k := range keys {
		for _, form := range encodings(k.bytes()) {
			if bytes.Contains(raw, []byte(form)) {
				t.Errorf("the file holds master key %s (as %q)", k.ID(), form)
			}
		}
	}
}

// encodings lists p as is, in hex, and in base64 at each of the three byte
// alignments it can have inside a longer encoded string (the edge
// characters, which depend on the neighbours, dropped).
func encodings(p []byte) []string {
	out := []string{string(p), hex.EncodeToString(p), strings.ToUpper(hex.EncodeToString(p))}
	for off := 0; off < 3 && off < len(p); off++ {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := strings.TrimRight(enc.EncodeToString(p[off:]), "=")
			// The last group may mix with the following byte.
			if n := len(e) / 4 * 4; n >= 8 {
				e = e[:n-4]
			}
			if len(e) >= 8 {
				out = append(out, e)
			}
		}
	}
	return out
}

func TestRawFileHoldsNoPlaintext(t *testing.T) {
	s := openTest(t, func(c *Config) { c.NoSync = false })
	w := fill(t, s)
	// Deleted and rotated-away values must not linger either.
	extra := mustUpsert(t, s, w.tenant.ID, SecretInput{Name: "gone", Value: "PLAINTEXT-deleted-0011", Scope: ScopeTenant, RefreshToken: "PLAINTEXT-deleted-refresh-0012", AllowedHosts: []string{"api.example.com"}}).Secret
	if err := s.DeleteSecret(w.tenant.ID, extra.ID); err != nil {
		t.Fatal(err)
	}
	w.plaintexts = append(w.plaintexts, "PLAINTEXT-deleted-0011", "PLAINTEXT-deleted-refresh-0012")
	// Tokens are stored as hashes.
	tokens := []string{w.adminToken, w.opToken, w.browserToken, w.sbxToken, w.cmpToken}
	key := s.key
	path := s.Path()
	s.Close()
	assertNoPlaintext(t, path, append(w.plaintexts, tokens...), key)
	// The search does find what is there (the check is not vacuous).
	raw := storeDump(t, path)
	for _, known := range []string{w.secrets["openai"].ID, "api.openai.com", w.placeholders["openai"]} {
		if !bytes.Contains(raw, []byte(known)) {
			t.Errorf("the file does not hold %q: the search is broken", known)
		}
	}
}
