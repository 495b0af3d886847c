package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/vault"
)

// keyUpstream is a loopback HTTPS upstream that answers 200 when the
// request's Authorization is one of the real values it is told to accept,
// 403 otherwise: a placeholder that was not substituted, or substituted
// wrong, fails the request.
type keyUpstream struct {
	mu     sync.Mutex
	accept map[string]bool
}

func (u *keyUpstream) allow(values ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, v := range values {
		u.accept["Bearer "+v] = true
	}
}

func (u *keyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	ok := u.accept[r.Header.Get("Authorization")]
	u.mu.Unlock()
	if !ok {
		http.Error(w, "not a real value", http.StatusForbidden)
		return
	}
	fmt.Fprint(w, "ok")
}

func newKeyUpstream(t *testing.T) (u *keyUpstream, port int, caFile string) {
	t.Helper()
	u = &keyUpstream{accept: map[string]bool{}}
	port, caFile = tlsServer(t, u)
	return u, port, caFile
}

// writeKeys writes the keys to a new file, one a line, as a replica's
// --master-key-file holds its ring.
func writeKeys(t *testing.T, keys ...*vault.MasterKey) string {
	t.Helper()
	var lines []string
	for _, k := range keys {
		one := filepath.Join(t.TempDir(), "k")
		if err := vault.WriteMasterKeyFile(one, k); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(string(readFile(t, one))))
	}
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The online rekey of a cluster, step by step as docs/operating.md gives
// it, with two real replicas serving traffic throughout:
//
//  1. egressd init --store makes the vault, the CA and the first keys;
//     the two replicas started together afterwards print none;
//  2. the replicas run with both keys (old and new, one a line); a third
//     holds the old key alone;
//  3. egressd vault rekey --store runs while sandboxes send requests
//     through both replicas, with a rotation on each side of it: no request
//     fails, every one reaches the upstream with a real value; a secret
//     first used after the rekey (opened from its re-wrapped row) works;
//     the third replica's /readyz turns 503 naming the key it lacks;
//  4. rolling restart with the new key alone: everything opens; the old
//     key alone is refused; a second rekey finds nothing to do;
//  5. egressd audit export --store has the requests and the rekey's row.
func TestServeStoreRekeyOnline(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	ctx := t.Context()
	up, upPort, upCAFile := newKeyUpstream(t)
	target := fmt.Sprintf("https://localhost:%d/v1/models", upPort)
	oldKey, newKey := vault.NewMasterKey(), vault.NewMasterKey()
	oldFile, newFile, ringFile := writeKeys(t, oldKey), writeKeys(t, newKey), writeKeys(t, oldKey, newKey)
	store := []string{"--store", dsn, "--store-schema", schema}
	flags := append([]string{"--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile}, store...)

	// 1. init on the store, then two replicas started together.
	r := egressd(t, nil, append([]string{"init", "--master-key-file", oldFile}, store...)...)
	if r.code != 0 {
		t.Fatalf("init --store exited %d: %s", r.code, r.stderr)
	}
	noPassword(t, dsn, r.stdout, r.stderr)
	var ini map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &ini); err != nil || str(ini, "api_key") == "" || ini["ca_created"] != true || !strings.Contains(str(ini, "store"), schema) {
		t.Fatalf("init --store printed %s (%v)", r.stdout, err)
	}
	dirs := []string{filepath.Join(t.TempDir(), "r1"), filepath.Join(t.TempDir(), "r2"), filepath.Join(t.TempDir(), "r3")}
	reps := []*proc{
		startServe(t, dirs[0], nil, append(flags, "--master-key-file", ringFile)...),
		startServe(t, dirs[1], nil, append(flags, "--master-key-file", ringFile)...),
		startServe(t, dirs[2], nil, append(flags, "--master-key-file", oldFile)...),
	}
	proxies := make([]string, len(reps))
	for i, p := range reps {
		p.admin = p.waitAddr(t, filepath.Join(dirs[i], "admin.addr"))
		proxies[i] = p.waitAddr(t, filepath.Join(dirs[i], "proxy.addr"))
		p.waitReady(t)
	}
	for i, p := range reps {
		if out := p.stdout.String(); out != "" {
			t.Fatalf("replica %d printed first-run keys after init --store: %q", i+1, out)
		}
	}
	api1, err := client.New("http://"+reps[0].admin, str(ini, "api_key"))
	if err != nil {
		t.Fatal(err)
	}
	api2, err := client.New("http://"+reps[1].admin, str(ini, "api_key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM := readBody(t, "http://"+reps[0].admin+"/api/v1/ca.pem")

	s1, err := api1.CreateSecret(ctx, client.SecretInput{Name: "S1", Value: "sk-rekey-v1", Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := api1.CreateSecret(ctx, client.SecretInput{Name: "S2", Value: "sk-rekey-late", Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	sbx, err := api1.CreateSandbox(ctx, client.SandboxInput{Name: "rekey"})
	if err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]string{"S1": s1.Secret.ID, "S2": s2.Secret.ID} {
		if _, err := api1.CreateBinding(ctx, client.BindingInput{SecretID: id, ResourceID: sbx.ID, ExposeAsEnv: name}); err != nil {
			t.Fatal(err)
		}
	}
	env, err := api1.SandboxEnv(ctx, sbx.ID)
	if err != nil {
		t.Fatal(err)
	}
	ph1, ph2 := env.Env["S1"], env.Env["S2"]
	up.allow("sk-rekey-v1")

	// 3. Traffic through both replicas, two clients each, until stopped.
	var sent, okCount atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 {
		c := sandboxClient(t, proxies[i], sbx.ID, sbx.ProxyToken, caPEM)
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					a, err := bearerGet(c, target, ph1)
					sent.Add(1)
					if err == nil && a.status == http.StatusOK {
						okCount.Add(1)
						continue
					}
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("replica %d: %d %s %v", i+1, a.status, a.body, err))
					failMu.Unlock()
				}
			})
		}
	}
	waitSent := func(n int64) {
		t.Helper()
		from := sent.Load()
		waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return sent.Load() >= from+n })
	}
	waitSent(40)
	up.allow("sk-rekey-v2")
	if _, err := api1.RotateSecret(ctx, s1.Secret.ID, client.RotateInput{Value: "sk-rekey-v2"}); err != nil {
		t.Fatal(err)
	}
	waitSent(40)
	// Replica 3 announced that it holds the old key alone: the rekey is
	// refused, naming it, until told to go on regardless.
	node3, err := datadir.Dir(dirs[2]).NodeID()
	if err != nil {
		t.Fatal(err)
	}
	rekey := append([]string{"vault", "rekey", "--master-key-file", ringFile, "--new-master-key-file", newFile}, store...)
	r = egressd(t, nil, rekey...)
	if r.code != 1 || !strings.Contains(r.stderr, node3+" (holds "+oldKey.ID()+",") || !strings.Contains(r.stderr, "nothing changed") {
		t.Fatalf("vault rekey --store past a replica without the new key: exit %d: %s", r.code, r.stderr)
	}
	r = egressd(t, nil, append(rekey, "--ignore-replicas")...)
	if r.code != 0 {
		t.Fatalf("vault rekey --store exited %d: %s", r.code, r.stderr)
	}
	noPassword(t, dsn, r.stdout, r.stderr)
	var res vault.RekeyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OldKeyID != oldKey.ID() || res.NewKeyID != newKey.ID() || res.Secrets != 2 ||
		len(res.Replicas) != 3 || !strings.Contains(res.ReplicasLacking, node3) || strings.Count(res.ReplicasLacking, " (holds ") != 1 {
		t.Fatalf("vault rekey --store printed %s (%v)", r.stdout, err)
	}
	rekeyedAt := sent.Load()
	t.Logf("vault rekey --store took %v (the process, connecting, the rekey's transaction)", r.took.Round(time.Millisecond))
	waitSent(40)
	up.allow("sk-rekey-v3")
	if _, err := api2.RotateSecret(ctx, s1.Secret.ID, client.RotateInput{Value: "sk-rekey-v3"}); err != nil {
		t.Fatal(err)
	}
	waitSent(40)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed around the rekey; first: %s", len(failures), sent.Load(), failures[0])
	}
	t.Logf("%d requests through two replicas, %d of them after the rekey, none failed", okCount.Load(), okCount.Load()-rekeyedAt)

	// A secret first used now opens from its re-wrapped row on both.
	up.allow("sk-rekey-late")
	for i := range 2 {
		c := sandboxClient(t, proxies[i], sbx.ID, sbx.ProxyToken, caPEM)
		if a := mustBearerGet(t, c, target, ph2); a.status != http.StatusOK {
			t.Fatalf("replica %d, a secret first used after the rekey: %d %s", i+1, a.status, a.body)
		}
	}
	// The replica without the new key fails closed and says which key.
	waitFor(t, "replica 3's /readyz naming the new key", func() bool {
		code, body := get(t, "http://"+reps[2].admin+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), "master_key: ") && strings.Contains(string(body), newKey.ID())
	})
	for i := range 2 {
		if code, body := get(t, "http://"+reps[i].admin+"/readyz"); code != http.StatusOK {
			t.Fatalf("replica %d /readyz after the rekey: %d %s", i+1, code, body)
		}
		if log := reps[i].stderr.String(); !strings.Contains(log, "the vault was rekeyed: new values are sealed with master key "+newKey.ID()) {
			t.Errorf("replica %d does not log the rekey:\n%s", i+1, log)
		}
	}
	if log := reps[2].stderr.String(); !strings.Contains(log, "the vault was rekeyed to a master key this replica does not hold") {
		t.Errorf("replica 3 does not log that it lacks the new key:\n%s", log)
	}

	// 4. Rolling restart with the new key alone.
	for i := range 2 {
		if code := reps[i].stop(t); code != 0 {
			t.Fatalf("replica %d exited %d: %s", i+1, code, reps[i].stderr.String())
		}
		noPassword(t, dsn, reps[i].stdout.String(), reps[i].stderr.String())
		p := serve(t, dirs[i], nil, append(flags, "--master-key-file", newFile)...)
		c := sandboxClient(t, p.waitAddr(t, filepath.Join(dirs[i], "proxy.addr")), sbx.ID, sbx.ProxyToken, caPEM)
		for _, ph := range []string{ph1, ph2} {
			if a := mustBearerGet(t, c, target, ph); a.status != http.StatusOK {
				t.Fatalf("replica %d with the new key alone: %d %s", i+1, a.status, a.body)
			}
		}
		reps[i] = p
	}
	reps[2].stop(t)
	r = egressd(t, nil, append(append([]string{"serve", "--data-dir", dirs[2], "--master-key-file", oldFile, "--admin-listen", "127.0.0.1:0",
		"--proxy-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, store...), flags...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "master key") {
		t.Fatalf("serve with the old key alone after the rekey: %d %s", r.code, r.stderr)
	}
	r = egressd(t, nil, append([]string{"vault", "rekey", "--master-key-file", newFile, "--new-master-key-file", newFile}, store...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing to do") {
		t.Fatalf("a second rekey: %d %s", r.code, r.stderr)
	}

	// 5. The audit export of the store, the replicas serving.
	r = egressd(t, nil, append([]string{"audit", "export", "--master-key-file", newFile, "--since", "1h"}, store...)...)
	if r.code != 0 {
		t.Fatalf("audit export --store exited %d: %s", r.code, r.stderr)
	}
	requests, rekeyed := 0, 0
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row audit.Row
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("audit export line: %v", err)
		}
		switch {
		case row.Kind == audit.KindRequest:
			requests++
		case row.Action == vault.ActionVaultRekeyed:
			rekeyed++
			if row.Details["new_master_key_id"] != newKey.ID() {
				t.Fatalf("rekey row %+v", row.Details)
			}
		}
	}
	if requests == 0 || rekeyed != 1 {
		t.Fatalf("audit export --store: %d request rows, %d rekey rows", requests, rekeyed)
	}
	for _, out := range []string{r.stdout, r.stderr} {
		for _, v := range []string{"sk-rekey-v1", "sk-rekey-v2", "sk-rekey-v3", "sk-rekey-late", base64.StdEncoding.EncodeToString([]byte("sk-rekey"))} {
			if strings.Contains(out, v) {
				t.Fatalf("the audit export shows a value")
			}
		}
	}
	for _, p := range reps[:2] {
		if code := p.stop(t); code != 0 {
			t.Fatalf("serve exited %d", code)
		}
		noPassword(t, dsn, p.stdout.String(), p.stderr.String())
	}
}

// readBody GETs url and returns its body, failing on another status than
// 200.
func readBody(t *testing.T, url string) []byte {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	return body
}

// Regression: replicas started together on an empty store could each find
// no tenant and each print a new admin key. Exactly one prints the first
// keys now, and its admin key works on every replica.
func TestServeStoreFirstRunOnce(t *testing.T) {
	dsn := pgDSN(t)
	schema := pgSchema(t, dsn)
	keyFile := writeKeys(t, vault.NewMasterKey())
	var reps []*proc
	var dirs []string
	for i := range 3 {
		dirs = append(dirs, filepath.Join(t.TempDir(), fmt.Sprintf("r%d", i+1)))
		reps = append(reps, startServe(t, dirs[i], nil, "--store", dsn, "--store-schema", schema, "--master-key-file", keyFile))
	}
	printed := []*proc{}
	for i, p := range reps {
		p.admin = p.waitAddr(t, filepath.Join(dirs[i], "admin.addr"))
		p.waitReady(t)
	}
	for _, p := range reps {
		if p.stdout.String() != "" {
			printed = append(printed, p)
		}
	}
	if len(printed) != 1 {
		t.Fatalf("%d of 3 replicas printed first-run keys, want 1", len(printed))
	}
	key := str(firstRunKeys(t, printed[0]), "api_key")
	for i, p := range reps {
		if code, body := p.call(t, http.MethodGet, "/api/v1/whoami", key, nil); code != http.StatusOK {
			t.Fatalf("replica %d with the first admin key: %d %s", i+1, code, body)
		}
		if code := p.stop(t); code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	}
}

// The tools on a shared store refuse what they cannot use before they
// reach the store (the DSN here points at a closed port): no master key
// given (audit export needs none), a new key that does not exist, a ring of three keys; and a data
// dir's serve refuses a two-key file. Nothing is created.
func TestStoreToolRefusals(t *testing.T) {
	const dsn = "postgres://egressd:secretpw@127.0.0.1:1/none"
	work := t.TempDir()
	key := writeKeys(t, vault.NewMasterKey())
	ring := writeKeys(t, vault.NewMasterKey(), vault.NewMasterKey())
	three := writeKeys(t, vault.NewMasterKey(), vault.NewMasterKey(), vault.NewMasterKey())
	missing := filepath.Join(work, "missing.key")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"vault", "rekey", "--store", dsn, "--new-master-key-file", key}, 2, "with --store the master key is required"},
		{[]string{"init", "--store", dsn}, 2, "with --store the master key is required"},
		{[]string{"vault", "reindex", "--store", dsn}, 2, "with --store the master key is required"},
		{[]string{"vault", "reindex", "--store", dsn, "--master-key-file", key}, 1, "connection refused"},
		// audit export reads unsealed rows: it needs no key and goes on
		// to the store (refused at the closed port).
		{[]string{"audit", "export", "--store", dsn}, 1, "connection refused"},
		{[]string{"vault", "rekey", "--store", dsn, "--master-key-file", key, "--new-master-key-file", missing}, 1, "must exist and be held by every replica"},
		{[]string{"vault", "rekey", "--store", dsn, "--master-key-file", three, "--new-master-key-file", key}, 1, "3 keys, at most 2"},
		{[]string{"vault", "rekey", "--store", dsn, "--master-key-file", ring, "--new-master-key-file", ring}, 1, "must hold the new key alone"},
		{[]string{"init", "--store", dsn, "--master-key-file", missing}, 1, "master key not found"},
		{[]string{"serve", "--data-dir", filepath.Join(work, "d"), "--master-key-file", ring}, 1, "a key ring is for a shared store (--store) only"},
	} {
		r := egressd(t, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr+r.stdout, "secretpw") {
			t.Errorf("egressd %s: %d %q, want %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "d")); err == nil {
		t.Error("a refused serve created its data dir")
	}
}
