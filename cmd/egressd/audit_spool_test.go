package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// A replica on PostgreSQL whose audit rows cannot be written there (the
// table refuses them, reads still work) keeps substituting while it
// journals them, up to --audit-spool-max; then it answers 503
// audit_unavailable, and /readyz says why. Once PostgreSQL takes rows
// again it ships what it journaled, serves, and is ready again.
func TestServeStoreAuditSpool(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	ctx := t.Context()
	_, upPort, upCAFile := tlsUpstream(t)
	target := fmt.Sprintf("https://localhost:%d/v1/models", upPort)
	key := filepath.Join(t.TempDir(), "master.key")
	if err := vault.WriteMasterKeyFile(key, vault.NewMasterKey()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--store", dsn, "--store-schema", schema, "--master-key-file", key, "--audit-spool-max", "3",
		"--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile)
	api, err := client.New("http://"+s.admin, str(firstRunKeys(t, s), "api_key"))
	if err != nil {
		t.Fatal(err)
	}
	const value = "sk-live-spool-5d1c0e9a2b7f4483"
	sec, err := api.CreateSecret(ctx, client.SecretInput{Name: "OPENAI_API_KEY", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}, PlaceholderPrefix: "sk-proj-"})
	if err != nil {
		t.Fatal(err)
	}
	sbx, placeholder := boundSandbox(t, api, client.SandboxInput{Name: "spool"}, sec.Secret.ID, "OPENAI_KEY")
	code, caPEM := get(t, "http://"+s.admin+"/api/v1/ca.pem")
	if code != http.StatusOK {
		t.Fatalf("ca.pem: %d", code)
	}
	c := sandboxClient(t, s.waitAddr(t, filepath.Join(dir, "proxy.addr")), sbx.ID, sbx.ProxyToken, caPEM)
	if got := mustBearerGet(t, c, target, placeholder); got.status != http.StatusOK {
		t.Fatalf("before: %d %s", got.status, got.body)
	}

	// PostgreSQL refuses every new audit row: a real refusal of its own.
	admin, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	table := pgx.Identifier{schema, "audit"}.Sanitize()
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	exec("ALTER TABLE " + table + " ADD CONSTRAINT spool_test_refuse CHECK (false) NOT VALID")
	served := 1
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := mustBearerGet(t, c, target, placeholder)
		if got.status == http.StatusOK {
			served++
		} else if got.status == http.StatusServiceUnavailable && got.header.Get("X-Egress-Denied") == "audit_unavailable" {
			break
		} else {
			t.Fatalf("while PostgreSQL refuses rows: %d %s %s", got.status, got.header.Get("X-Egress-Denied"), got.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still served %d requests with the audit rows refused", served)
		}
	}
	if code, body := get(t, "http://"+s.admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"reason":"audit: `) {
		t.Fatalf("/readyz while shipping fails: %d %s", code, body)
	}

	exec("ALTER TABLE " + table + " DROP CONSTRAINT spool_test_refuse")
	waitFor(t, "/readyz 200 once the rows ship", func() bool {
		code, _ := get(t, "http://"+s.admin+"/readyz")
		return code == http.StatusOK
	})
	if got := mustBearerGet(t, c, target, placeholder); got.status != http.StatusOK {
		t.Fatalf("after: %d %s", got.status, got.body)
	}
	served++
	// Every request served has its row: the one written before its value
	// left (a request's final row, with its status, written after the
	// response, may have been refused too once the spool was full).
	substituted := 0
	for _, r := range requestRows(t, api, sbx.ID) {
		if len(r.Uses) == 1 && r.Uses[0].Action == "substituted" {
			substituted++
		}
	}
	if substituted != served {
		t.Fatalf("%d rows of substitutions, %d requests served", substituted, served)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	noPassword(t, dsn, s.stdout.String(), s.stderr.String())
	t.Logf("%d requests served while PostgreSQL refused the rows (bound 3), then 503", served-2)
}
