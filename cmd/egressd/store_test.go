package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/pgtest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
)

// pgDSN is the DSN of the PostgreSQL the tests may create schemas in, or
// skips the test saying how to run it.
func pgDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("EGRESSD_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("no PostgreSQL: set EGRESSD_TEST_POSTGRES to a DSN, e.g. (as root, Debian's postgresql installed) " +
			`pg_virtualenv sh -c 'EGRESSD_TEST_POSTGRES="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$PGDATABASE" go test -run "TestStore|TestServeStore" ./cmd/egressd/', or run .ci/run`)
	}
	return dsn
}

// pgSchema names a fresh schema, dropped when the test ends.
func pgSchema(t *testing.T, dsn string) string {
	t.Helper()
	return pgtest.FreshSchema(t, dsn, "egressd_cmd_")
}

// dsnPassword is the password in dsn ("" if none), for checking that no
// output shows it.
func dsnPassword(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Password
}

// noPassword fails if any output holds the DSN's password.
func noPassword(t *testing.T, dsn string, outputs ...string) {
	t.Helper()
	pw := dsnPassword(t, dsn)
	if pw == "" {
		return
	}
	for _, out := range outputs {
		if strings.Contains(out, pw) {
			t.Fatalf("an output shows the DSN's password:\n%s", out)
		}
	}
}

// firstRunKeys reads the admin and operator keys serve printed on its
// first run.
func firstRunKeys(t *testing.T, s *proc) map[string]any {
	t.Helper()
	waitFor(t, "the first-run line on stdout", func() bool { return strings.Contains(s.stdout.String(), "\n") })
	var keys map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(s.stdout.String(), "\n", 2)[0]), &keys); err != nil {
		t.Fatalf("first-run line is not JSON: %v", err)
	}
	return keys
}

// sandboxClient is an HTTP client of a sandbox: through proxyAddr as
// sandbox id with token, trusting only caPEM.
func sandboxClient(t *testing.T, proxyAddr, id, token string, caPEM []byte) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	return proxyClient(t, &url.URL{Scheme: "http", User: url.UserPassword(id, token), Host: proxyAddr}, roots)
}

// A single node's vault moves to PostgreSQL: egressd store copy copies the
// data dir of a stopped bbolt egressd (tenant, keys, secrets, bindings, a
// sandbox with its token and placeholders, OAuth state, audit rows) into an
// empty schema, and egressd serve --store on a new data dir with the same
// master key serves it: the old proxy token authenticates, the old
// placeholder is substituted in a real request through the proxy to a
// loopback TLS upstream, under the CA the sandbox already trusted, and the
// old audit rows are there.
func TestStoreCopyThenServe(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	ctx := t.Context()
	rec, upPort, upCAFile := tlsUpstream(t)
	target := fmt.Sprintf("https://localhost:%d/v1/models", upPort)
	flags := []string{"--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile}

	// The single node, on bbolt.
	old := filepath.Join(t.TempDir(), "old")
	a := serve(t, old, nil, flags...)
	keys := firstRunKeys(t, a)
	apiKey := str(keys, "api_key")
	api, err := client.New("http://"+a.admin, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	const value = "sk-live-copy-0f3c9a5e7b21d846"
	sec, err := api.CreateSecret(ctx, client.SecretInput{Name: "OPENAI_API_KEY", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}, PlaceholderPrefix: "sk-proj-"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateSecret(ctx, client.SecretInput{Name: "GH_TOKEN", Value: "ghp-copy-user-7d2e", Scope: vault.ScopeUser, OwnerUserID: "u1",
		RefreshToken: "ghr-copy-refresh-1a9b", AllowedHosts: []string{"api.github.com"}}); err != nil {
		t.Fatal(err)
	}
	sbx, placeholder := boundSandbox(t, api, client.SandboxInput{Name: "copied", OwnerUserID: "u1", ExternalUserID: "eu1"}, sec.Secret.ID, "OPENAI_KEY")
	if !strings.HasPrefix(placeholder, "sk-proj-EGP_") {
		t.Fatalf("placeholder %q", placeholder)
	}
	if _, err := api.PutOverride(ctx, "github", client.OverrideInput{ClientID: "copy-client", ClientSecret: "copy-client-secret-5c1d"}); err != nil {
		t.Fatal(err)
	}
	flow, err := api.Connect(ctx, client.ConnectInput{Provider: "github", Scope: vault.ScopeUser, OwnerUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	oldCA := readFile(t, filepath.Join(old, "ca.pem"))
	c := sandboxClient(t, a.waitAddr(t, filepath.Join(old, "proxy.addr")), sbx.ID, sbx.ProxyToken, oldCA)
	if got := mustBearerGet(t, c, target, placeholder); got.status != http.StatusOK || rec.last(t, 1).header.Get("Authorization") != "Bearer "+value {
		t.Fatalf("before the copy: %d %s", got.status, got.body)
	}
	auditBefore := requestRows(t, api, sbx.ID)
	if len(auditBefore) != 1 {
		t.Fatalf("request rows before the copy: %d", len(auditBefore))
	}

	// The copy: refused without the master key, while the vault is in use
	// and into a non-empty store; then done.
	copyArgs := []string{"store", "copy", "--from", old, "--to", dsn, "--store-schema", schema}
	if r := egressd(t, nil, copyArgs...); r.code != 2 || !strings.Contains(r.stderr, "the master key is required") {
		t.Fatalf("copy without a master key: %d %s", r.code, r.stderr)
	}
	copyArgs = append(copyArgs, "--master-key-file", filepath.Join(old, "master.key"))
	if r := egressd(t, nil, copyArgs...); r.code != 1 || !strings.Contains(r.stderr, "in use by a running egressd") {
		t.Fatalf("copy while serve runs: %d %s", r.code, r.stderr)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	r := egressdLong(t, nil, copyArgs...)
	if r.code != 0 {
		t.Fatalf("store copy exited %d: %s", r.code, r.stderr)
	}
	noPassword(t, dsn, r.stdout, r.stderr)
	var out struct {
		Buckets      map[string]int `json:"buckets"`
		Keys         int            `json:"keys"`
		ValuesOpened int            `json:"values_opened"`
		SharedCA     bool           `json:"shared_ca"`
		CA           string         `json:"ca_sha256"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("store copy printed no JSON: %v\n%s", err, r.stdout)
	}
	oldCert, err := certs.ParseCA(oldCA, readFile(t, filepath.Join(old, "ca-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if !out.SharedCA || out.CA != oldCert.Fingerprint() || out.ValuesOpened != 3 || out.Buckets["sandboxes"] != 1 ||
		out.Buckets["secrets"] != 2 || out.Buckets["bindings"] != 1 || out.Buckets["oauth_flows"] != 1 || out.Buckets["audit"] < 1 {
		t.Fatalf("store copy: %s", r.stdout)
	}
	if r := egressd(t, nil, copyArgs...); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("a second copy: %d %s", r.code, r.stderr)
	}

	// Serve on PostgreSQL from a new data dir with the same master key.
	fresh := filepath.Join(t.TempDir(), "new")
	b := serve(t, fresh, nil, append(flags, "--store", dsn, "--store-schema", schema, "--master-key-file", filepath.Join(old, "master.key"))...)
	if b.stdout.String() != "" {
		t.Errorf("serve on the copy printed first-run keys: %q", b.stdout.String())
	}
	c = sandboxClient(t, b.waitAddr(t, filepath.Join(fresh, "proxy.addr")), sbx.ID, sbx.ProxyToken, oldCA)
	got := mustBearerGet(t, c, target, placeholder)
	if got.status != http.StatusOK || got.root == nil || !got.root.Equal(oldCert.Certificate()) {
		t.Fatalf("through the copy: %d %s (served under the old CA: %v)", got.status, got.body, got.root != nil && got.root.Equal(oldCert.Certificate()))
	}
	if h := rec.last(t, 2).header.Get("Authorization"); h != "Bearer "+value {
		t.Fatalf("upstream got Authorization %q through the copy", h)
	}
	api, err = client.New("http://"+b.admin, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	rows := requestRows(t, api, sbx.ID)
	if len(rows) != 2 {
		t.Fatalf("request rows on the copy: %d, want 2", len(rows))
	}
	found := false
	for _, row := range rows {
		found = found || row.ID == auditBefore[0].ID
	}
	if !found {
		t.Fatal("the audit row from before the copy is not on the copy")
	}
	// audit export reads the rows shipped to PostgreSQL while the replica
	// serves, without the master key.
	exp := egressd(t, nil, "audit", "export", "--store", dsn, "--store-schema", schema, "--since", "1h", "--tenant-id", rows[0].TenantID)
	if exp.code != 0 {
		t.Fatalf("audit export --store: %d %s", exp.code, exp.stderr)
	}
	noPassword(t, dsn, exp.stdout, exp.stderr)
	exported := map[string]bool{}
	for line := range strings.Lines(exp.stdout) {
		var row audit.Row
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("audit export line %q: %v", line, err)
		}
		exported[row.ID] = true
	}
	for _, row := range rows {
		if !exported[row.ID] {
			t.Fatalf("audit export --store: row %s missing from %d rows", row.ID, len(exported))
		}
	}
	if o, err := api.GetOverride(ctx, "github"); err != nil || !o.HasClientSecret || o.ClientID != "copy-client" {
		t.Fatalf("OAuth override on the copy: %+v %v", o, err)
	}
	if f, err := api.Flow(ctx, flow.ID, 0); err != nil || f.Status != vault.FlowPending {
		t.Fatalf("OAuth flow on the copy: %+v %v", f, err)
	}
	if code, body := get(t, "http://"+b.admin+"/api/v1/ca.pem"); code != http.StatusOK || string(body) != string(oldCA) {
		t.Fatalf("ca.pem on the copy: %d", code)
	}
	for _, f := range []string{"node.id", "audit.journal"} {
		if _, err := os.Stat(filepath.Join(fresh, f)); err != nil {
			t.Errorf("the new data dir: %v", err)
		}
	}
	for _, f := range []string{"egressd.db", "ca-key.pem", "master.key"} {
		if _, err := os.Stat(filepath.Join(fresh, f)); err == nil {
			t.Errorf("the new data dir holds %s", f)
		}
	}
	if code := b.stop(t); code != 0 {
		t.Fatalf("serve on PostgreSQL exited %d", code)
	}
	noPassword(t, dsn, b.stdout.String(), b.stderr.String())
	if !strings.Contains(b.stderr.String(), `"msg":"vault open","store":"`) || !strings.Contains(b.stderr.String(), "shared CA loaded from the store") {
		t.Errorf("the log does not say which store is in use:\n%s", b.stderr.String())
	}
}

// requestRows are the audit rows of the sandbox's proxied requests.
func requestRows(t *testing.T, api *client.Client, sandboxID string) []audit.Row {
	t.Helper()
	var out []audit.Row
	err := api.AuditAll(t.Context(), client.AuditFilter{SandboxID: sandboxID}, func(r audit.Row) error {
		if r.Kind == audit.KindRequest {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Two replicas started together on an empty schema end with one shared
// CA: both present the same, and one of them created it.
func TestServeStoreSharedCA(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	key := filepath.Join(t.TempDir(), "master.key")
	if err := vault.WriteMasterKeyFile(key, vault.NewMasterKey()); err != nil {
		t.Fatal(err)
	}
	args := []string{"--store", dsn, "--store-schema", schema, "--master-key-file", key}
	dirs := []string{filepath.Join(t.TempDir(), "r1"), filepath.Join(t.TempDir(), "r2")}
	var procs []*proc
	for _, d := range dirs {
		procs = append(procs, startServe(t, d, nil, args...))
	}
	var cas []string
	for i, p := range procs {
		p.admin = p.waitAddr(t, filepath.Join(dirs[i], "admin.addr"))
		p.waitReady(t)
		code, body := get(t, "http://"+p.admin+"/api/v1/ca.pem")
		if code != http.StatusOK {
			t.Fatalf("ca.pem: %d", code)
		}
		cas = append(cas, string(body))
	}
	if cas[0] != cas[1] {
		t.Fatal("two replicas present different CAs")
	}
	for _, p := range procs {
		if code := p.stop(t); code != 0 {
			t.Fatalf("serve exited %d: %s", code, p.stderr.String())
		}
		noPassword(t, dsn, p.stdout.String(), p.stderr.String())
	}
	if n := strings.Count(procs[0].stderr.String()+procs[1].stderr.String(), "created the shared CA"); n != 1 {
		t.Errorf("%d replicas say they created the shared CA, want 1", n)
	}
}

// egressd store migrate brings a schema to this egressd's version and says
// from which; again, it finds nothing to do.
func TestStoreMigrate(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	for i, before := range []int{0, pgstore.SchemaVersion()} {
		r := egressd(t, []string{"EGRESSD_STORE=" + dsn}, "store", "migrate", "--store-schema", schema)
		if r.code != 0 {
			t.Fatalf("migrate %d: exit %d: %s", i, r.code, r.stderr)
		}
		noPassword(t, dsn, r.stdout, r.stderr)
		var out struct {
			Store         string `json:"store"`
			Schema        string `json:"schema"`
			Before, After int
		}
		if err := json.Unmarshal([]byte(strings.NewReplacer("version_before", "before", "version_after", "after").Replace(r.stdout)), &out); err != nil {
			t.Fatalf("migrate printed %q: %v", r.stdout, err)
		}
		if out.Schema != schema || out.Before != before || out.After != pgstore.SchemaVersion() || out.Store == "" {
			t.Fatalf("migrate %d printed %s", i, r.stdout)
		}
	}
	if r := egressd(t, nil, "store", "migrate"); r.code != 2 || !strings.Contains(r.stderr, "PostgreSQL DSN") {
		t.Fatalf("migrate without --store: %d %s", r.code, r.stderr)
	}
}

// /readyz is 503 while the store cannot be reached and 200 again once it
// can: the replica's connections go through a TCP relay the test cuts.
func TestServeStoreReadyz(t *testing.T) {
	dsn := pgDSN(t)
	if strings.Contains(dsn, "://") {
		t.Skip("needs a key=value DSN to point it at the relay")
	}
	schema := pgSchema(t, dsn)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	relay := newRelay(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	host, port, _ := net.SplitHostPort(relay.addr)
	key := filepath.Join(t.TempDir(), "master.key")
	if err := vault.WriteMasterKeyFile(key, vault.NewMasterKey()); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--store", dsn+" host="+host+" port="+port, "--store-schema", schema, "--master-key-file", key)
	relay.cut()
	waitFor(t, "/readyz 503 with the store cut off", func() bool {
		code, body := get(t, "http://"+s.admin+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), `"reason":"store: `)
	})
	if code, _ := get(t, "http://"+s.admin+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d: the process still serves", code)
	}
	relay.restore(t)
	waitFor(t, "/readyz 200 with the store back", func() bool {
		code, _ := get(t, "http://"+s.admin+"/readyz")
		return code == http.StatusOK
	})
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	noPassword(t, dsn, s.stdout.String(), s.stderr.String())
}

// Refusals that need no server: each is one line naming --store (its
// password masked), and nothing is created.
func TestServeStoreRefusals(t *testing.T) {
	const pw = "pw-never-shown-3b8e"
	key := filepath.Join(t.TempDir(), "master.key")
	if err := vault.WriteMasterKeyFile(key, vault.NewMasterKey()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"not a DSN", []string{"--store", "mysql://root:" + pw + "@db/x", "--master-key-file", key}, "--store (not a DSN; not shown): want bolt"},
		{"unreachable", []string{"--store", "host=127.0.0.1 port=1 user=e password=" + pw + " dbname=e connect_timeout=2", "--master-key-file", key}, "--store host=127.0.0.1 port=1 user=e password=xxxxx dbname=e connect_timeout=2: "},
		{"no master key", []string{"--store", "postgres://e:" + pw + "@127.0.0.1:1/e"}, "every replica needs the same master key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			r := egressd(t, nil, append([]string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, c.args...)...)
			if r.code == 0 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q, want one line with %q", r.code, r.stderr, c.want)
			}
			if strings.Contains(r.stderr+r.stdout, pw) {
				t.Fatalf("the refusal shows the password: %s", r.stderr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Fatal("the data dir was created")
			}
		})
	}
	r := egressd(t, nil, "serve", "-h")
	if !strings.Contains(r.stderr, "-store DSN") || !strings.Contains(r.stderr, "EGRESSD_STORE") {
		t.Errorf("serve -h does not list --store:\n%s", r.stderr)
	}
}

// relay forwards TCP connections to a target until cut: then it closes
// its listener and every connection, until restored on the same address.
type relay struct {
	target, addr string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	r := &relay{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.start(ln)
	t.Cleanup(r.cut)
	return r
}

func (r *relay) start(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[up] = true, true
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close(); c.Close() }()
			go func() { io.Copy(c, up); up.Close(); c.Close() }()
		}
	}()
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
}

func (r *relay) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.start(ln)
}

// audit export --store only reads: a schema that holds no store is
// refused and is still not there afterwards.
func TestStoreAuditExportMissingSchema(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn) // named, not created: nothing made it yet
	r := egressd(t, nil, "audit", "export", "--store", dsn, "--store-schema", schema, "--since", "1h")
	if r.code != 1 || !strings.Contains(r.stderr, "holds no egressd store") {
		t.Fatalf("audit export of a missing schema: %d %q", r.code, r.stderr)
	}
	noPassword(t, dsn, r.stdout, r.stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("audit export created schema %s", schema)
	}
}
