package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const lockedMsg = "the data dir is in use by a running egressd; stop it first"

func TestVerbs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"version", []string{"version"}, 0, "egressd ", ""},
		{"help", []string{"help"}, 0, "vault rekey", ""},
		{"no verb", nil, 2, "", "Commands:"},
		{"unknown verb", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"vault without verb", []string{"vault"}, 2, "", "egressd vault rekey"},
		{"vault unknown verb", []string{"vault", "open"}, 2, "", `unknown command "open"`},
		{"serve -h", []string{"serve", "-h"}, 0, "", "EGRESSD_ADMIN_LISTEN"},
		{"serve stray argument", []string{"serve", "now"}, 2, "", `unexpected argument "now"`},
		{"serve bad log format", []string{"serve", "--log-format", "xml"}, 1, "", "--log-format"},
		{"serve bad proxy listen", []string{"serve", "--proxy-listen", "8080"}, 1, "", "--proxy-listen"},
		{"serve bad transparent listen", []string{"serve", "--transparent-listen", "443"}, 1, "", "--transparent-listen"},
		{"serve -h names the transparent listener's variable", []string{"serve", "-h"}, 0, "", "EGRESSD_TRANSPARENT_LISTEN"},
		{"rekey without new file", []string{"vault", "rekey"}, 2, "", "--new-master-key-file is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := egressd(t, nil, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s\nwant stdout with %q, stderr with %q", r.code, tc.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
		})
	}
	r := egressd(t, nil, "help")
	for _, verb := range []string{"init", "serve", "vault rekey", "version", "help"} {
		if !strings.Contains(r.stdout, "  "+verb+" ") {
			t.Errorf("usage does not list %q:\n%s", verb, r.stdout)
		}
	}
}

func TestInitTwice(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first := mustInit(t, nil, "--data-dir", dir, "--tenant", "acme")
	for _, k := range []string{"tenant_id", "api_key", "operator_key", "data_dir", "ca_cert_file"} {
		if str(first, k) == "" {
			t.Fatalf("first init lacks %s: %v", k, first)
		}
	}
	if str(first, "tenant_name") != "acme" || first["master_key_created"] != true || first["ca_created"] != true {
		t.Fatalf("first init: %v", first)
	}
	if fi, err := os.Stat(filepath.Join(dir, "master.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master.key: %v %v", fi, err)
	}
	if pem := readFile(t, str(first, "ca_cert_file")); !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
		t.Fatal("ca_cert_file holds no certificate")
	}
	files := []string{"master.key", "ca.pem", "ca-key.pem"}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = readFile(t, filepath.Join(dir, f))
	}

	second := mustInit(t, nil, "--data-dir", dir, "--tenant", "acme")
	if _, ok := second["operator_key"]; ok {
		t.Fatal("second init printed the operator key again")
	}
	if second["master_key_created"] != false || second["ca_created"] != false || str(second, "tenant_id") != str(first, "tenant_id") {
		t.Fatalf("second init: %v", second)
	}
	if str(second, "api_key") == "" || str(second, "api_key") == str(first, "api_key") {
		t.Fatal("second init did not mint a new admin key")
	}
	for _, f := range files {
		if !bytes.Equal(before[f], readFile(t, filepath.Join(dir, f))) {
			t.Fatalf("second init changed %s", f)
		}
	}

	// Both admin keys and the operator key work against the server.
	s := serve(t, dir, nil)
	if out := s.stdout.String(); out != "" {
		t.Fatalf("serve after init printed %q", out)
	}
	for _, key := range []string{str(first, "api_key"), str(second, "api_key")} {
		if code, body := s.call(t, "GET", "/api/v1/egress/secrets", key, nil); code != http.StatusOK {
			t.Fatalf("admin key: %d %s", code, body)
		}
	}
	code, body := s.call(t, "POST", "/api/v1/tenants", str(first, "operator_key"), map[string]string{"name": "second-tenant"})
	if code != http.StatusCreated {
		t.Fatalf("operator key: %d %s", code, body)
	}
	if c := s.stopWith(t, os.Interrupt); c != 0 {
		t.Fatalf("SIGINT: serve exited %d: %s", c, s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), "interrupt signal received") {
		t.Fatalf("shutdown cause not logged:\n%s", s.stderr.String())
	}
}

func TestServeFirstRun(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil)

	lines := strings.Split(strings.TrimRight(s.stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout holds %d lines, want 1: %q", len(lines), s.stdout.String())
	}
	var keys map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &keys); err != nil {
		t.Fatalf("first-run line is not JSON: %v", err)
	}
	apiKey, opKey := str(keys, "api_key"), str(keys, "operator_key")
	if apiKey == "" || opKey == "" || str(keys, "tenant_name") != "default" || str(keys, "tenant_id") == "" {
		t.Fatalf("first-run keys: %v", keys)
	}

	for _, c := range []struct {
		url, want string
	}{
		{"http://" + s.admin + "/healthz", `"ok"`},
		{"http://" + s.admin + "/readyz", `"ready"`},
		{"http://" + s.metrics + "/metrics", "egressd_resolver_cache_misses_total"},
		{"http://" + s.metrics + "/metrics", "go_goroutines"},
		{"http://" + s.metrics + "/metrics", "process_resident_memory_bytes"},
	} {
		code, body := get(t, c.url)
		if code != http.StatusOK || !bytes.Contains(body, []byte(c.want)) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.300s", c.url, code, c.want, body)
		}
	}
	if code, body := s.call(t, "POST", "/api/v1/sandboxes", apiKey, map[string]string{"owner_user_id": "u1"}); code != http.StatusCreated {
		t.Fatalf("create sandbox with the printed key: %d %s", code, body)
	}
	if code, _ := s.call(t, "GET", "/api/v1/sandboxes", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no key: %d, want 401", code)
	}
	if code, _ := s.call(t, "GET", "/api/v1/sandboxes", "adm_wrong", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d, want 401", code)
	}

	if c := s.stop(t); c != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0; stderr:\n%s", c, s.stderr.String())
	}
	logs := s.stderr.String()
	if strings.Contains(logs, apiKey) || strings.Contains(logs, opKey) {
		t.Fatal("a key was logged")
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("log line is not JSON: %s", line)
		}
	}
	for _, want := range []string{"first run", "proxy serving", "vault closed", "egressd stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}

	// The db was closed: init opens it, and a second serve prints nothing secret.
	mustInit(t, nil, "--data-dir", dir, "--tenant", "default")
	s2 := serve(t, dir, nil)
	if code, body := s2.call(t, "GET", "/api/v1/sandboxes", apiKey, nil); code != http.StatusOK {
		t.Fatalf("key after restart: %d %s", code, body)
	}
	if c := s2.stop(t); c != 0 {
		t.Fatalf("second serve exit %d", c)
	}
	if out := s2.stdout.String(); out != "" {
		t.Fatalf("second serve printed %q", out)
	}
}

func TestVerbsFailFastWhileServing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil)

	r := egressd(t, nil, "init", "--data-dir", dir, "--tenant", "other")
	if r.code == 0 || !strings.Contains(r.stderr, lockedMsg) {
		t.Fatalf("init while serving: exit %d, stderr %q", r.code, r.stderr)
	}
	if r.took > 10*time.Second {
		t.Fatalf("init took %s to give up", r.took)
	}
	newKey := filepath.Join(t.TempDir(), "new.key")
	r = egressd(t, nil, "vault", "rekey", "--data-dir", dir, "--new-master-key-file", newKey)
	if r.code == 0 || !strings.Contains(r.stderr, "stop the server first") {
		t.Fatalf("rekey while serving: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(newKey); !os.IsNotExist(err) {
		t.Fatal("a failed rekey left its new key file")
	}
	// A second server on the same dir fails the same way.
	s2 := startServe(t, dir, nil)
	if c := s2.wait(t); c == 0 || !strings.Contains(s2.stderr.String(), lockedMsg) {
		t.Fatalf("second serve: exit %d, stderr %s", c, s2.stderr.String())
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}
	if r := egressd(t, nil, "init", "--data-dir", dir, "--tenant", "other"); r.code != 0 {
		t.Fatalf("init after stop: %d %s", r.code, r.stderr)
	}
}

func TestRekeyThenServe(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	keys := mustInit(t, nil, "--data-dir", dir)
	apiKey := str(keys, "api_key")
	const value = "sk-rekey-known-value-7f3a9c"

	s := serve(t, dir, nil)
	code, body := s.call(t, "POST", "/api/v1/egress/secrets", apiKey, map[string]any{
		"name": "OPENAI_API_KEY", "value": value, "scope": "tenant", "allowed_hosts": []string{"api.openai.com"},
	})
	if code != http.StatusCreated {
		t.Fatalf("create secret: %d %s", code, body)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}

	oldKey := filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(oldKey, readFile(t, filepath.Join(dir, "master.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	newKey := filepath.Join(t.TempDir(), "new.key")
	r := egressd(t, nil, "vault", "rekey", "--data-dir", dir, "--new-master-key-file", newKey)
	if r.code != 0 {
		t.Fatalf("rekey: %d %s", r.code, r.stderr)
	}
	var out struct {
		Secrets  int    `json:"secrets"`
		OldKeyID string `json:"old_key_id"`
		NewKeyID string `json:"new_key_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Secrets != 1 || out.OldKeyID == "" || out.NewKeyID == "" || out.OldKeyID == out.NewKeyID {
		t.Fatalf("rekey output %q: %v", r.stdout, err)
	}
	if fi, err := os.Stat(newKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", fi, err)
	}
	if !bytes.Equal(readFile(t, newKey), readFile(t, filepath.Join(dir, "master.key"))) {
		t.Fatal("master.key was not replaced by the new key")
	}

	// The default key file now holds the new key: serve works.
	s = serve(t, dir, nil)
	code, body = s.call(t, "GET", "/api/v1/egress/secrets", apiKey, nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte("OPENAI_API_KEY")) {
		t.Fatalf("list after rekey: %d %s", code, body)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}

	// The old key no longer opens the vault, and says so.
	old := startServe(t, dir, nil, "--master-key-file", oldKey)
	if c := old.wait(t); c == 0 {
		t.Fatal("serve with the old key started")
	}
	if e := old.stderr.String(); !strings.Contains(e, "does not open this vault") || !strings.Contains(e, "rekeyed") {
		t.Fatalf("serve with the old key: %s", e)
	}
	for _, text := range []string{r.stdout, r.stderr, old.stderr.String(), string(readFile(t, filepath.Join(dir, "egressd.db")))} {
		if strings.Contains(text, value) {
			t.Fatal("the secret's value appears in an output or the vault file")
		}
	}
}

func TestMasterKeyFromEnv(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	env := []string{"EGRESSD_MASTER_KEY=" + strings.Repeat("ab", 32)}
	res := mustInit(t, env, "--data-dir", dir)
	if res["master_key_created"] != false {
		t.Fatalf("init: %v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key")); !os.IsNotExist(err) {
		t.Fatal("a master key file was written for a key from the environment")
	}
	s := serve(t, dir, env)
	if code, body := s.call(t, "GET", "/api/v1/egress/secrets", str(res, "api_key"), nil); code != http.StatusOK {
		t.Fatalf("API: %d %s", code, body)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}
	if strings.Contains(s.stderr.String(), strings.Repeat("ab", 32)) {
		t.Fatal("the master key was logged")
	}
	// Without the variable there is no key: a clear refusal, no new key.
	r := egressd(t, nil, "init", "--data-dir", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "master key not found") {
		t.Fatalf("init without the key: %d %s", r.code, r.stderr)
	}
	// A file and the variable at once is ambiguous.
	r = egressd(t, env, "init", "--data-dir", dir, "--master-key-file", filepath.Join(dir, "k"))
	if r.code == 0 || !strings.Contains(r.stderr, "EGRESSD_MASTER_KEY") {
		t.Fatalf("file and env: %d %s", r.code, r.stderr)
	}
}

func TestServeFromEnvFlagWins(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	env := []string{
		"EGRESSD_DATA_DIR=" + filepath.Join(t.TempDir(), "not-this-one"),
		"EGRESSD_ADMIN_LISTEN=127.0.0.1:0",
		"EGRESSD_METRICS_LISTEN=127.0.0.1:0",
		"EGRESSD_LOG_FORMAT=text",
		"EGRESSD_PROXY_URL=http://egressd.internal:3128",
	}
	s := startServe(t, dir, env) // --data-dir dir wins over EGRESSD_DATA_DIR
	s.admin = s.waitAddr(t, filepath.Join(dir, "admin.addr"))
	if code, _ := get(t, "http://"+s.admin+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d", c)
	}
	logs := s.stderr.String()
	if !strings.Contains(logs, "level=INFO") || !strings.Contains(logs, "proxy_url=http://egressd.internal:3128") {
		t.Fatalf("env settings not applied:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "egressd.db")); err != nil {
		t.Fatal("--data-dir did not win over EGRESSD_DATA_DIR")
	}
}
