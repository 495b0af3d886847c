package datadir

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/vault"
)

func fileSource(t *testing.T, dir Dir) KeySource {
	t.Helper()
	src, err := NewKeySource(dir, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openStore opens the vault of dir with src and closes it when the test ends.
func openStore(t *testing.T, dir Dir, src KeySource) *vault.Store {
	t.Helper()
	k, _, err := src.Load(false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenVault(dir, k, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestInitTwiceKeepsEverything(t *testing.T) {
	dir := Dir(filepath.Join(t.TempDir(), "data"))
	src := fileSource(t, dir)
	first, err := Init(dir, src, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !first.MasterKeyCreated || !first.CACreated || first.APIKey == "" || first.OperatorKey == "" || first.TenantName != "acme" {
		t.Fatalf("first init: %+v", first)
	}
	if !filepath.IsAbs(first.DataDir) || first.CACertFile != filepath.Join(first.DataDir, certs.CACertFile) {
		t.Fatalf("paths: %s %s", first.DataDir, first.CACertFile)
	}
	for name, want := range map[string]os.FileMode{MasterKeyFile: 0o600, certs.CAKeyFile: 0o600, DBFile: 0o600, "": 0o700} {
		fi, err := os.Stat(dir.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}
	key, ca, caKey := read(t, dir.MasterKey()), read(t, dir.CACert()), read(t, dir.Path(certs.CAKeyFile))

	second, err := Init(dir, src, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if second.MasterKeyCreated || second.CACreated || second.OperatorKey != "" || second.TenantID != first.TenantID {
		t.Fatalf("second init: %+v", second)
	}
	if second.APIKey == first.APIKey {
		t.Fatal("second init printed the same admin key")
	}
	if !bytes.Equal(key, read(t, dir.MasterKey())) || !bytes.Equal(ca, read(t, dir.CACert())) || !bytes.Equal(caKey, read(t, dir.Path(certs.CAKeyFile))) {
		t.Fatal("second init changed the master key or the CA")
	}
	st := openStore(t, dir, src)
	for _, tok := range []string{first.APIKey, second.APIKey} {
		k, err := st.Authenticate(tok)
		if err != nil || k.TenantID != first.TenantID || k.Kind != vault.KeyAdmin {
			t.Fatalf("admin key: %+v %v", k, err)
		}
	}
	if k, err := st.Authenticate(first.OperatorKey); err != nil || k.Kind != vault.KeyOperator {
		t.Fatalf("operator key: %+v %v", k, err)
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	c := InitResult{Credentials: Credentials{TenantID: "ten_1", TenantName: "x", APIKey: "adm_SECRETSECRET", OperatorKey: "op_SECRETSECRET"}}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "c", c.Credentials, "r", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %s", c, c, c), buf.String()} {
		if strings.Contains(s, "SECRET") {
			t.Fatalf("printed a token: %s", s)
		}
	}
}

func TestEnvMasterKeyWritesNoFile(t *testing.T) {
	dir := Dir(t.TempDir())
	text := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, vault.MasterKeySize))
	src, err := NewKeySource(dir, "", false, text)
	if err != nil {
		t.Fatal(err)
	}
	if !src.FromEnv() || strings.Contains(fmt.Sprintf("%v %#v %s", src, src, src), text) {
		t.Fatalf("source prints as %v", src)
	}
	res, err := Init(dir, src, "t")
	if err != nil {
		t.Fatal(err)
	}
	if res.MasterKeyCreated {
		t.Fatal("master_key_created with a key from the environment")
	}
	if _, err := os.Stat(dir.MasterKey()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a master key file was written: %v", err)
	}
	other, _ := NewKeySource(dir, "", false, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{8}, vault.MasterKeySize)))
	if _, err := Init(dir, other, "t"); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("another key: err = %v, want ErrWrongMasterKey", err)
	}
	if _, err := NewKeySource(dir, "/k", true, text); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("file and env: err = %v", err)
	}
	bad, _ := NewKeySource(dir, "", false, "not a key")
	if _, err := Init(dir, bad, "t"); !errors.Is(err, vault.ErrBadMasterKey) || !strings.Contains(err.Error(), "EGRESSD_MASTER_KEY") {
		t.Fatalf("bad env key: err = %v", err)
	}
}

// Regression: an existing vault whose key file is gone must not get a fresh
// key that can never open it.
func TestMissingKeyIsNotRecreated(t *testing.T) {
	dir := Dir(t.TempDir())
	src := fileSource(t, dir)
	if _, err := Init(dir, src, "t"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir.MasterKey()); err != nil {
		t.Fatal(err)
	}
	_, err := Init(dir, src, "t")
	if !errors.Is(err, ErrNoMasterKey) {
		t.Fatalf("err = %v, want ErrNoMasterKey", err)
	}
	if _, err := os.Stat(dir.MasterKey()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a new master key was created for an existing vault")
	}
}

func TestInitWhileOpenFailsFast(t *testing.T) {
	dir := Dir(t.TempDir())
	src := fileSource(t, dir)
	if _, err := Init(dir, src, "t"); err != nil {
		t.Fatal(err)
	}
	openStore(t, dir, src)
	start := time.Now()
	_, err := Init(dir, src, "t")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "the data dir is in use by a running egressd; stop it first") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestBootstrapOnce(t *testing.T) {
	dir := Dir(t.TempDir())
	o, err := Open(dir, fileSource(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Store.Close()
	if !o.VaultCreated || !o.MasterKeyCreated || !o.CACreated {
		t.Fatalf("opened: %+v", o)
	}
	c, ok, err := Bootstrap(o.Store)
	if err != nil || !ok || c.TenantName != DefaultTenant || c.APIKey == "" || c.OperatorKey == "" {
		t.Fatalf("bootstrap: %v %v %v", c, ok, err)
	}
	c, ok, err = Bootstrap(o.Store)
	if err != nil || ok || c.APIKey != "" {
		t.Fatalf("second bootstrap: %v %v %v", c, ok, err)
	}
}

// seedSecret stores a secret in the vault of dir and returns its tenant and id.
func seedSecret(t *testing.T, dir Dir, src KeySource, value string) (string, string) {
	t.Helper()
	res, err := Init(dir, src, "t")
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir, src)
	up, err := st.UpsertSecret(res.TenantID, vault.SecretInput{Name: "OPENAI_API_KEY", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.openai.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return res.TenantID, up.Secret.ID
}

func openValue(t *testing.T, dir Dir, src KeySource, tenantID, secretID string) (string, error) {
	t.Helper()
	k, _, err := src.Load(false)
	if err != nil {
		return "", err
	}
	st, err := OpenVault(dir, k, src)
	if err != nil {
		return "", err
	}
	defer st.Close()
	var got string
	err = st.Read(func(r *vault.Reader) error {
		v, _, _, err := r.OpenValue(tenantID, secretID)
		got = string(v.Reveal())
		return err
	})
	return got, err
}

func TestRekeyReplacesKeyFile(t *testing.T) {
	dir := Dir(t.TempDir())
	src := fileSource(t, dir)
	tid, sid := seedSecret(t, dir, src, "sk-known-value")
	oldCopy := filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(oldCopy, read(t, dir.MasterKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	newFile := filepath.Join(t.TempDir(), "new.key")
	out, err := Rekey(dir, src, newFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.Secrets != 1 || out.OldKeyID == out.NewKeyID || !out.NewKeyCreated || out.ReplacedFile != dir.MasterKey() {
		t.Fatalf("outcome: %+v", out)
	}
	if fi, err := os.Stat(newFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", fi, err)
	}
	if fi, err := os.Stat(dir.MasterKey()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced key file: %v %v", fi, err)
	}
	if !bytes.Equal(read(t, newFile), read(t, dir.MasterKey())) {
		t.Fatal("master.key does not hold the new key")
	}
	if got, err := openValue(t, dir, src, tid, sid); err != nil || got != "sk-known-value" {
		t.Fatalf("after rekey: %q %v", got, err)
	}
	oldSrc, _ := NewKeySource(dir, oldCopy, true, "")
	if _, err := openValue(t, dir, oldSrc, tid, sid); !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "rekeyed") {
		t.Fatalf("old key: err = %v, want ErrWrongMasterKey with advice", err)
	}
	if _, err := Rekey(dir, src, dir.MasterKey(), 0); err == nil {
		t.Fatal("rekey onto the current key file succeeded")
	}
}

func TestRekeyFromEnvKeepsNoFile(t *testing.T) {
	dir := Dir(t.TempDir())
	text := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, vault.MasterKeySize))
	src, _ := NewKeySource(dir, "", false, text)
	tid, sid := seedSecret(t, dir, src, "v1")
	newFile := filepath.Join(t.TempDir(), "new.key")
	out, err := Rekey(dir, src, newFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.ReplacedFile != "" {
		t.Fatalf("replaced %s", out.ReplacedFile)
	}
	if _, err := os.Stat(dir.MasterKey()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("rekey wrote a master key file for an env key")
	}
	newSrc, _ := NewKeySource(dir, "", false, string(read(t, newFile)))
	if got, err := openValue(t, dir, newSrc, tid, sid); err != nil || got != "v1" {
		t.Fatalf("after rekey: %q %v", got, err)
	}
}

func TestRekeyRefusals(t *testing.T) {
	t.Run("no vault", func(t *testing.T) {
		dir := Dir(t.TempDir())
		_, err := Rekey(dir, fileSource(t, dir), filepath.Join(t.TempDir(), "n"), 0)
		if !errors.Is(err, ErrNoVault) {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(dir.DB()); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("rekey created a vault file")
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := Dir(t.TempDir())
		src := fileSource(t, dir)
		if _, err := Init(dir, src, "t"); err != nil {
			t.Fatal(err)
		}
		openStore(t, dir, src)
		newFile := filepath.Join(t.TempDir(), "n")
		_, err := Rekey(dir, src, newFile, 100*time.Millisecond)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "stop the server first") {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(newFile); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("the new key file created for a failed rekey was left behind")
		}
	})
	t.Run("wrong old key", func(t *testing.T) {
		dir := Dir(t.TempDir())
		src := fileSource(t, dir)
		if _, err := Init(dir, src, "t"); err != nil {
			t.Fatal(err)
		}
		wrong := filepath.Join(t.TempDir(), "wrong.key")
		if err := vault.WriteMasterKeyFile(wrong, vault.NewMasterKey()); err != nil {
			t.Fatal(err)
		}
		wsrc, _ := NewKeySource(dir, wrong, true, "")
		before := read(t, wrong)
		_, err := Rekey(dir, wsrc, filepath.Join(t.TempDir(), "n"), 0)
		if !errors.Is(err, ErrWrongMasterKey) {
			t.Fatalf("err = %v", err)
		}
		if !bytes.Equal(before, read(t, wrong)) {
			t.Fatal("a failed rekey replaced the key file")
		}
	})
}
