package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// The cluster of issue 14 with real processes: egressd serve replicas on
// one PostgreSQL schema (--store, --store-schema), each on its own data
// dir and loopback ports, all with the same master key file. Sandboxes'
// traffic goes through each replica's proxy as a sandbox sends it (CONNECT
// with the proxy token, MITM under the shared CA) to a loopback TLS
// upstream that records the credential it got.

// Metrics of a replica's change listener (vault/pgstore/metrics.go).
const (
	metricLagCount   = "egressd_store_invalidation_lag_seconds_count"
	metricLagSum     = "egressd_store_invalidation_lag_seconds_sum"
	metricListenerUp = "egressd_store_listener_up"
	metricReconnects = "egressd_store_listener_reconnects_total"
)

// pgCluster is replicas on one fresh schema, sharing a master key file and
// a recording upstream.
type pgCluster struct {
	dsn, schema, keyFile string
	env                  []string
	flags                []string // every replica's, beside the store's
	apiKey               string
	up                   *upstreamRecorder
	target               string // the upstream's base URL
	seq                  atomic.Int64
}

// replica is one egressd serve of the cluster.
type replica struct {
	*proc
	name, dir, dsn string
	args           []string
	proxyAddr      string
	api            *client.Client
	stopped        bool // by stopAll
}

// newPGCluster makes the schema, the master key file and the upstream;
// flags are added to every replica's.
func newPGCluster(t *testing.T, env []string, flags ...string) *pgCluster {
	t.Helper()
	dsn := pgDSN(t)
	c := &pgCluster{dsn: dsn, schema: pgSchema(t, dsn), keyFile: filepath.Join(t.TempDir(), "master.key"), env: env}
	if err := vault.WriteMasterKeyFile(c.keyFile, vault.NewMasterKey()); err != nil {
		t.Fatal(err)
	}
	var upCA string
	var port int
	c.up, port, upCA = tlsUpstream(t)
	c.target = fmt.Sprintf("https://localhost:%d", port)
	c.flags = append([]string{"--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCA}, flags...)
	return c
}

// start starts replicas (name: its DSN, "" for the cluster's) and waits
// until each is ready. The first replica ever started is started alone:
// its first run prints the admin key (and creates the shared CA).
func (c *pgCluster) start(t *testing.T, dsns map[string]string, names ...string) []*replica {
	t.Helper()
	var out []*replica
	if c.apiKey == "" {
		first := c.launch(t, names[0], dsns[names[0]])
		c.apiKey = str(firstRunKeys(t, first.proc), "api_key")
		c.ready(t, first)
		out, names = append(out, first), names[1:]
	}
	var rest []*replica
	for _, n := range names {
		rest = append(rest, c.launch(t, n, dsns[n]))
	}
	for _, r := range rest {
		c.ready(t, r)
	}
	return append(out, rest...)
}

// launch starts a replica on a new data dir without waiting for it.
func (c *pgCluster) launch(t *testing.T, name, dsn string) *replica {
	t.Helper()
	if dsn == "" {
		dsn = c.dsn
	}
	r := &replica{name: name, dir: filepath.Join(t.TempDir(), name), dsn: dsn}
	r.args = append(slices.Clone(c.flags), "--store", dsn, "--store-schema", c.schema, "--master-key-file", c.keyFile)
	r.proc = startServe(t, r.dir, c.env, r.args...)
	return r
}

// restart starts r again on its data dir (after it died) and waits until
// it is ready.
func (c *pgCluster) restart(t *testing.T, r *replica) {
	t.Helper()
	r.proc = startServe(t, r.dir, c.env, r.args...)
	c.ready(t, r)
}

func (c *pgCluster) ready(t *testing.T, r *replica) {
	t.Helper()
	r.admin = r.waitAddr(t, filepath.Join(r.dir, "admin.addr"))
	r.metrics = r.waitAddr(t, filepath.Join(r.dir, "metrics.addr"))
	r.proxyAddr = r.waitAddr(t, filepath.Join(r.dir, "proxy.addr"))
	r.waitReady(t)
	api, err := client.New("http://"+r.admin, c.apiKey)
	if err != nil {
		t.Fatal(err)
	}
	r.api = api
}

// stopAll stops the replicas not stopped yet, all at once (SIGTERM, exit
// 0), and checks that no output shows the DSN's password or any of the
// values.
func (c *pgCluster) stopAll(t *testing.T, rs []*replica, values ...string) {
	t.Helper()
	var stopping []*replica
	for _, r := range rs {
		if r.stopped {
			continue
		}
		r.stopped = true
		select {
		case <-r.exited:
			t.Errorf("replica %s exited %d before it was stopped; stderr:\n%s", r.name, r.cmd.ProcessState.ExitCode(), r.stderr.String())
			continue
		default:
		}
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		stopping = append(stopping, r)
	}
	for _, r := range stopping {
		if code := r.wait(t); code != 0 {
			t.Errorf("replica %s exited %d; stderr:\n%s", r.name, code, r.stderr.String())
		}
		noPassword(t, c.dsn, r.stdout.String(), r.stderr.String())
		for _, v := range values {
			if strings.Contains(r.stdout.String()+r.stderr.String(), v) {
				t.Errorf("replica %s wrote a secret's value to its output", r.name)
			}
		}
	}
}

// sent is what one request through a replica came to: the proxy's answer
// and the Authorization header the upstream received ("" and reached
// false when the request did not reach it).
type sent struct {
	status  int
	denied  string // X-Egress-Denied
	auth    string
	reached bool
	at      time.Time // when it was sent
}

// send sends GET /tag/<n> to the upstream through c (a sandbox's client of
// one replica) with Authorization: Bearer placeholder. No t: it runs in
// the tests' goroutines too.
func (cl *pgCluster) send(c *http.Client, tag, placeholder string) (sent, error) {
	uri := fmt.Sprintf("/%s/%d", tag, cl.seq.Add(1))
	s := sent{at: time.Now()}
	a, err := bearerGet(c, cl.target+uri, placeholder)
	if err != nil {
		return s, err
	}
	s.status, s.denied = a.status, a.header.Get("X-Egress-Denied")
	if r, ok := cl.up.find(uri); ok {
		s.auth, s.reached = r.header.Get("Authorization"), true
	}
	return s, nil
}

// find returns the request the upstream received for uri.
func (u *upstreamRecorder) find(uri string) (upstreamRecord, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.reqs) - 1; i >= 0; i-- {
		if u.reqs[i].uri == uri {
			return u.reqs[i], true
		}
	}
	return upstreamRecord{}, false
}

// uris are the URIs the upstream received that start with prefix.
func (u *upstreamRecorder) uris(prefix string) []upstreamRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []upstreamRecord
	for _, r := range u.reqs {
		if strings.HasPrefix(r.uri, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// scrape reads the value of an unlabelled metric from a replica's
// /metrics.
func scrape(addr, name string) (float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", addr, name)
}

func metric(t *testing.T, r *replica, name string) float64 {
	t.Helper()
	v, err := scrape(r.metrics, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// placeholderOf is the sandbox's placeholder for the secret.
func placeholderOf(t *testing.T, sbx client.SandboxCreated, secretID string) string {
	t.Helper()
	for _, e := range sbx.Placeholders {
		if e.SecretID == secretID {
			return e.Placeholder
		}
	}
	t.Fatalf("sandbox %s has no placeholder for %s: %+v", sbx.ID, secretID, sbx.Placeholders)
	return ""
}

// changed is how a replica went over to a write of another replica: when
// (after the write returned) it sent the first request with the new
// credential, and how many it sent with the old one before.
type changed struct {
	after time.Duration
	stale int
}

// untilChanged sends requests through r (its sandbox client c) until the
// upstream gets want instead of old, at most 5 s after since (when the
// write that makes the change returned). Before each request it reads r's
// count of delivered changes: once that is above delivered0 (the write's
// change reached r, whose caches were dropped before it was counted),
// that request must get want; before, r may still answer old from its
// cache. Anything else is an error. No t.Fatal: it runs in the tests'
// goroutines.
func (cl *pgCluster) untilChanged(t *testing.T, r *replica, c *http.Client, tag, placeholder, old, want string, delivered0 float64, since time.Time) (changed, bool) {
	var ch changed
	for {
		n, err := scrape(r.metrics, metricLagCount)
		if err != nil {
			t.Errorf("replica %s: %v", r.name, err)
			return ch, false
		}
		s, err := cl.send(c, tag, placeholder)
		switch {
		case err != nil:
			t.Errorf("replica %s: %v", r.name, err)
			return ch, false
		case s.auth == want:
			ch.after = s.at.Sub(since)
			return ch, true
		case s.auth != old || s.status != http.StatusOK:
			t.Errorf("replica %s: %d %q, the upstream got neither the old credential nor the new one", r.name, s.status, s.denied)
			return ch, false
		case n > delivered0:
			t.Errorf("replica %s sent the old credential after the change had reached it (its delivered changes %v > %v)", r.name, n, delivered0)
			return ch, false
		case time.Since(since) > 5*time.Second:
			t.Errorf("replica %s still sends the old credential 5 s after the write", r.name)
			return ch, false
		}
		ch.stale++
	}
}

// stats is min, median and max.
func stats(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	r := func(x time.Duration) string { return x.Round(10 * time.Microsecond).String() }
	return fmt.Sprintf("min %s, median %s, max %s (n=%d)", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}

// holdNew closes the relay's listener but keeps the connections it relays:
// new connections through it are refused until restore.
func (r *relay) holdNew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
}

// TestServeStoreCluster runs three replicas, A, B and C, on one schema.
// C reaches PostgreSQL through a TCP relay and names its sessions
// egressd-c (its change listener's is egressd-c-listener).
//   - A rotate on A is used by B and C: each sends the old value until the
//     change reaches it and the new one from its next request on, within
//     1 s of the rotate.
//   - A disable on B: A and C stop substituting the secret, within 1 s.
//   - C's listener session is terminated (pg_terminate_backend) and held
//     off: C serves no value from its cache while it cannot hear other
//     replicas' writes, so a rotate on A meanwhile is never served stale
//     by C; back, C catches up.
//   - kill -9 of B under load through all three: A and C keep serving,
//     and every request B forwarded has its audit row once B is
//     restarted on its data dir.
func TestServeStoreCluster(t *testing.T) {
	dsn := pgDSN(t)
	if strings.Contains(dsn, "://") {
		t.Skip("needs a key=value DSN to point replica C at the relay")
	}
	ctx := t.Context()
	cl := newPGCluster(t, nil)
	pgc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	rl := newRelay(t, net.JoinHostPort(pgc.Host, strconv.Itoa(int(pgc.Port))))
	host, port, _ := net.SplitHostPort(rl.addr)
	cDSN := dsn + " host=" + host + " port=" + port + " application_name=egressd-c"
	start := time.Now()
	rs := cl.start(t, map[string]string{"c": cDSN}, "a", "b", "c")
	a, b, c := rs[0], rs[1], rs[2]
	t.Logf("three replicas ready in %s", time.Since(start).Round(time.Millisecond))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The change log's end. Each replica's count of delivered changes is
	// that of the other replicas' writes since it started: A makes every
	// write until the disable on B, so until then B's and C's counts
	// become logEnd() - base, and A's stays 0. A round waits for that
	// before it starts, so that what it counts next is its own write.
	changes := "SELECT coalesce(max(seq), 0) FROM " + pgx.Identifier{cl.schema, "changes"}.Sanitize()
	logEnd := func(t *testing.T) float64 {
		var n int64
		if err := conn.QueryRow(ctx, changes).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return float64(n)
	}
	base := logEnd(t)
	settled := func(t *testing.T, r *replica, want float64) {
		t.Helper()
		waitFor(t, "replica "+r.name+" to have every change delivered", func() bool { return metric(t, r, metricLagCount) == want })
	}
	for _, r := range rs {
		settled(t, r, 0)
	}

	// One secret per part, then the sandboxes (which get a placeholder for
	// each): "main" (sbx) for the first three parts, "load" for the kill.
	val := func(name string, n int) string { return fmt.Sprintf("sk-cluster-%s-%d-4e7a1c", name, n) }
	ids := map[string]string{}
	for _, name := range []string{"ROTATE", "DISABLE", "LISTENER", "LOAD"} {
		res, err := a.api.CreateSecret(ctx, client.SecretInput{Name: name, Value: val(name, 0), Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = res.Secret.ID
	}
	sbx, err := a.api.CreateSandbox(ctx, client.SandboxInput{Name: "main"})
	if err != nil {
		t.Fatal(err)
	}
	load, err := a.api.CreateSandbox(ctx, client.SandboxInput{Name: "load"})
	if err != nil {
		t.Fatal(err)
	}
	caPEM := []byte(sbx.CACertPEM)
	clientOf := func(r *replica, sbx client.SandboxCreated) *http.Client {
		return sandboxClient(t, r.proxyAddr, sbx.ID, sbx.ProxyToken, caPEM)
	}
	mainC := map[*replica]*http.Client{a: clientOf(a, sbx), b: clientOf(b, sbx), c: clientOf(c, sbx)}
	values := []string{}

	t.Run("RotateLag", func(t *testing.T) {
		ph := placeholderOf(t, sbx, ids["ROTATE"])
		const rounds = 10
		var after, delivery []time.Duration
		stale, firstFresh := 0, 0
		for i := range rounds {
			old, want := "Bearer "+val("ROTATE", i), "Bearer "+val("ROTATE", i+1)
			values = append(values, val("ROTATE", i+1))
			// B and C use the current value, and have it cached.
			d0 := map[*replica]float64{}
			s0 := map[*replica]float64{}
			end := logEnd(t)
			for _, r := range []*replica{b, c} {
				if s, err := cl.send(mainC[r], "rotate", ph); err != nil || s.auth != old {
					t.Fatalf("round %d, replica %s before the rotate: %v %d %q", i, r.name, err, s.status, s.denied)
				}
				settled(t, r, end-base)
				d0[r], s0[r] = metric(t, r, metricLagCount), metric(t, r, metricLagSum)
			}
			if _, err := a.api.RotateSecret(ctx, ids["ROTATE"], client.RotateInput{Value: val("ROTATE", i+1)}); err != nil {
				t.Fatal(err)
			}
			rotated := time.Now()
			var wg sync.WaitGroup
			got := map[*replica]changed{}
			var mu sync.Mutex
			for _, r := range []*replica{b, c} {
				wg.Go(func() {
					if ch, ok := cl.untilChanged(t, r, mainC[r], "rotate", ph, old, want, d0[r], rotated); ok {
						mu.Lock()
						got[r] = ch
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			for _, r := range []*replica{b, c} {
				ch := got[r]
				after, stale = append(after, ch.after), stale+ch.stale
				if ch.stale == 0 {
					firstFresh++
				}
				if ch.after >= time.Second {
					t.Errorf("round %d: replica %s sent the old value for %s after the rotate", i, r.name, ch.after)
				}
				// The rotate is the one change delivered meanwhile (so the
				// count above was about it), and its delivery lag.
				waitFor(t, "the rotate's change counted on "+r.name, func() bool { return metric(t, r, metricLagCount) > d0[r] })
				if n := metric(t, r, metricLagCount); n != d0[r]+1 {
					t.Fatalf("replica %s: %v changes delivered during the round, want 1", r.name, n-d0[r])
				}
				delivery = append(delivery, time.Duration((metric(t, r, metricLagSum)-s0[r])*float64(time.Second)))
			}
		}
		t.Logf("rotate on A (%d rounds, B and C): the first request after the rotate returned had the new value in %d of %d cases; %d requests in all had the old one", rounds, firstFresh, 2*rounds, stale)
		t.Logf("rotate on A: first request with the new value sent, after the rotate returned: %s (resolution: one metrics scrape and one request)", stats(after))
		t.Logf("rotate on A: delivery to B and C (egressd_store_invalidation_lag_seconds: from the change row's commit to the caches dropped): %s", stats(delivery))
	})

	t.Run("DisableRefused", func(t *testing.T) {
		ph := placeholderOf(t, sbx, ids["DISABLE"])
		v := "Bearer " + val("DISABLE", 0)
		d0 := map[*replica]float64{a: 0, c: logEnd(t) - base}
		for _, r := range []*replica{a, c} {
			if s, err := cl.send(mainC[r], "disable", ph); err != nil || s.auth != v {
				t.Fatalf("replica %s before the disable: %v %d %q", r.name, err, s.status, s.denied)
			}
			settled(t, r, d0[r])
		}
		if _, err := b.api.DisableSecret(ctx, ids["DISABLE"]); err != nil {
			t.Fatal(err)
		}
		disabled := time.Now()
		// B, which wrote it, at once: the placeholder is left as it is.
		if s, err := cl.send(mainC[b], "disable", ph); err != nil || s.auth != "Bearer "+ph {
			t.Fatalf("replica b after its own disable: %v %d %q, the upstream got a value", err, s.status, s.denied)
		}
		var wg sync.WaitGroup
		for _, r := range []*replica{a, c} {
			wg.Go(func() {
				if ch, ok := cl.untilChanged(t, r, mainC[r], "disable", ph, v, "Bearer "+ph, d0[r], disabled); ok {
					t.Logf("disable on B: replica %s left the placeholder from a request sent %s after it (%d requests substituted before)", r.name, ch.after.Round(10*time.Microsecond), ch.stale)
					if ch.after >= time.Second {
						t.Errorf("replica %s substituted a disabled secret for %s", r.name, ch.after)
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("ListenerKilled", func(t *testing.T) {
		ph := placeholderOf(t, sbx, ids["LISTENER"])
		old, want := "Bearer "+val("LISTENER", 0), "Bearer "+val("LISTENER", 1)
		values = append(values, val("LISTENER", 1))
		if s, err := cl.send(mainC[c], "listener", ph); err != nil || s.auth != old {
			t.Fatalf("replica c before: %v %d %q", err, s.status, s.denied)
		}
		reconnects0 := metric(t, c, metricReconnects)
		// C's new sessions are refused from now on (its open ones stay):
		// its listener cannot come back until the relay lets it.
		rl.holdNew()
		var killed int
		// The timeout makes it wait until the session has ended.
		if err := conn.QueryRow(ctx, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'egressd-c-listener'").Scan(&killed); err != nil || killed != 1 {
			t.Fatalf("terminated %d listener sessions of C: %v", killed, err)
		}
		waitFor(t, "C's listener down", func() bool { return metric(t, c, metricListenerUp) == 0 })
		if code, body := get(t, "http://"+c.admin+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("C's /readyz with its listener down: %d %s", code, body)
		}
		if _, err := a.api.RotateSecret(ctx, ids["LISTENER"], client.RotateInput{Value: val("LISTENER", 1)}); err != nil {
			t.Fatal(err)
		}
		// C cannot have heard of it; it reads through to PostgreSQL (or
		// refuses): the new value or nothing, never the old one.
		var fresh, refused int
		for range 20 {
			s, err := cl.send(mainC[c], "listener", ph)
			switch {
			case err != nil:
				t.Fatalf("replica c, listener down: %v", err)
			case s.auth == old:
				t.Fatal("replica c sent the old value while its listener was down, after a rotate on A")
			case s.auth == want && s.status == http.StatusOK:
				fresh++
			case !s.reached:
				refused++
			default:
				t.Fatalf("replica c, listener down: %d %q, the upstream got %d bytes of Authorization", s.status, s.denied, len(s.auth))
			}
		}
		if up := metric(t, c, metricListenerUp); up != 0 {
			t.Fatalf("C's listener came back while the relay held new sessions (listener_up %v)", up)
		}
		t.Logf("C with its listener down, after a rotate on A: %d requests with the new value (read through), %d refused, 0 with the old", fresh, refused)
		rl.restore(t)
		waitFor(t, "C's listener back and caught up", func() bool {
			return metric(t, c, metricListenerUp) == 1 && metric(t, c, metricReconnects) > reconnects0
		})
		if s, err := cl.send(mainC[c], "listener", ph); err != nil || s.auth != want {
			t.Fatalf("replica c caught up: %v %d %q", err, s.status, s.denied)
		}
		waitFor(t, "C ready again", func() bool { code, _ := get(t, "http://"+c.admin+"/readyz"); return code == http.StatusOK })
	})

	t.Run("KillUnderLoad", func(t *testing.T) {
		killUnderLoad(t, cl, a, b, c, load, placeholderOf(t, load, ids["LOAD"]), "Bearer "+val("LOAD", 0))
	})

	cl.stopAll(t, rs, append(values, val("ROTATE", 0), val("DISABLE", 0), val("LISTENER", 0), val("LOAD", 0))...)
}

// killUnderLoad: clients send requests through each replica in a loop;
// b is killed with SIGKILL once it has forwarded some. Requests through a
// and c must all succeed, during and after; b is restarted on its data
// dir, and every request the upstream received from b (whether or not b's
// answer reached its client) must have its audit row: with --audit sync
// (the default) a value leaves only after its row is in b's journal, which
// b's restart puts into the store.
func killUnderLoad(t *testing.T, cl *pgCluster, a, b, c *replica, sbx client.SandboxCreated, ph, want string) {
	caPEM := []byte(sbx.CACertPEM)
	const perReplica = 3
	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		ok        = map[string]*atomic.Int64{"a": {}, "b": {}, "c": {}}
		failMu    sync.Mutex
		failures  []string
		killed    atomic.Bool
		bErrAfter atomic.Int64
	)
	for _, r := range []*replica{a, b, c} {
		for range perReplica {
			hc := sandboxClient(t, r.proxyAddr, sbx.ID, sbx.ProxyToken, caPEM)
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s, err := cl.send(hc, "load/"+r.name, ph)
					if err == nil && s.status == http.StatusOK && s.auth == want {
						ok[r.name].Add(1)
						continue
					}
					if r == b {
						if !killed.Load() {
							failMu.Lock()
							failures = append(failures, fmt.Sprintf("b before the kill: %v %d %q", err, s.status, s.denied))
							failMu.Unlock()
						}
						bErrAfter.Add(1)
						return
					}
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("%s (b killed: %v): %v %d %q", r.name, killed.Load(), err, s.status, s.denied))
					failMu.Unlock()
					return
				}
			})
		}
	}
	waitFor(t, "100 requests through b", func() bool { return ok["b"].Load() >= 100 })
	killed.Store(true)
	b.cmd.Process.Kill()
	<-b.exited
	okA, okC := ok["a"].Load(), ok["c"].Load()
	waitFor(t, "100 more requests through each of a and c after the kill", func() bool {
		return ok["a"].Load() >= okA+100 && ok["c"].Load() >= okC+100
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d clients failed: %s", len(failures), strings.Join(failures, "; "))
	}
	fromB := cl.up.uris("/load/b/")
	t.Logf("before the kill: b answered %d requests, the upstream received %d from it; a and c answered %d and %d (%d and %d after the kill)",
		ok["b"].Load(), len(fromB), ok["a"].Load(), ok["c"].Load(), ok["a"].Load()-okA, ok["c"].Load()-okC)

	restarted := time.Now()
	cl.restart(t, b)
	t.Cleanup(func() { b.stopped = true }) // the end of this subtest stops it
	t.Logf("b restarted on its data dir in %s", time.Since(restarted).Round(time.Millisecond))
	forwarded := map[string]bool{}
	for _, p := range []string{"/load/a/", "/load/b/", "/load/c/"} {
		for _, r := range cl.up.uris(p) {
			if r.header.Get("Authorization") != want {
				t.Fatalf("the upstream got %s with another credential", r.uri)
			}
			forwarded[r.uri] = true
		}
	}
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows := map[string]bool{}
		err := a.api.AuditAll(t.Context(), client.AuditFilter{SandboxID: sbx.ID, Kind: audit.KindRequest, Limit: 1000}, func(r audit.Row) error {
			rows[r.Path] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for uri := range forwarded {
			if !rows[uri] {
				missing = append(missing, uri)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("%d of the %d requests the upstream received have no audit row, e.g. %v", len(missing), len(forwarded), missing[:min(5, len(missing))])
	}
	// b serves again. (Stopped here: this subtest's end would kill it.)
	if s, err := cl.send(sandboxClient(t, b.proxyAddr, sbx.ID, sbx.ProxyToken, caPEM), "load/b-again", ph); err != nil || s.auth != want {
		t.Fatalf("b after its restart: %v %d %q", err, s.status, s.denied)
	}
	cl.stopAll(t, []*replica{b}, strings.TrimPrefix(want, "Bearer "))
}

// loopbackProvider is an OAuth provider's token endpoint that rotates
// refresh tokens as real ones do: each is good for one refresh, which
// answers a new access token and the next refresh token; one used again is
// refused (invalid_grant) and revokes the family. So a second refresh of
// one token is fatal. The code exchange answers a token that expires in
// 2 s, which egressd refreshes before any use; a refresh answers one good
// for an hour, after 300 ms (so that replicas arriving meanwhile wait).
type loopbackProvider struct {
	mu       sync.Mutex
	current  string // the refresh token it takes next; "" once revoked
	issued   int
	codes    atomic.Int32
	refresh  atomic.Int32
	reused   atomic.Int32
	unwanted atomic.Int32
}

func loopbackAccess(n int) string { return fmt.Sprintf("at-%d-loopback-9d3f2b", n) }

func (p *loopbackProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.ParseForm() != nil {
		p.unwanted.Add(1)
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var at, rt string
	life := 2
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.codes.Add(1)
		p.mu.Lock()
		at, rt, p.current = loopbackAccess(0), "rt-1-loopback", "rt-1-loopback"
		p.mu.Unlock()
	case "refresh_token":
		p.refresh.Add(1)
		time.Sleep(300 * time.Millisecond)
		p.mu.Lock()
		if p.current == "" || r.PostForm.Get("refresh_token") != p.current {
			p.current = ""
			p.mu.Unlock()
			p.reused.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token already used"}`))
			return
		}
		p.issued++
		at, rt, life = loopbackAccess(p.issued), fmt.Sprintf("rt-%d-loopback", p.issued+1), 3600
		p.current = rt
		p.mu.Unlock()
	default:
		p.unwanted.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"unsupported_grant_type"}`))
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": at, "refresh_token": rt, "token_type": "Bearer", "expires_in": life})
}

// Eight replicas refresh one expiring OAuth token at once: the provider
// gets exactly one refresh, and every replica sends the refreshed token.
// The token comes from a real connect (egressd exchanges the code at the
// loopback provider, whose CA the replicas trust through SSL_CERT_FILE);
// each replica's sandbox connection is open before the burst, so the
// requests reach the replicas together.
func TestServeStoreClusterOAuthRefresh(t *testing.T) {
	ctx := t.Context()
	pgDSN(t)
	prov := &loopbackProvider{}
	provPort, provCA := tlsServer(t, prov)
	provURL := fmt.Sprintf("https://localhost:%d", provPort)
	pf := filepath.Join(t.TempDir(), "providers.json")
	raw, _ := json.Marshal(map[string]any{"providers": []map[string]any{{"name": "loopauth", "auth_url": provURL + "/authorize", "token_url": provURL + "/token",
		"allowed_hosts": []string{"localhost"}, "refresh": true, "pkce": true, "client_id": "cluster-client", "client_secret": "cluster-client-secret-8a1f"}}})
	if err := os.WriteFile(pf, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cl := newPGCluster(t, []string{"SSL_CERT_FILE=" + provCA}, "--oauth-providers", pf)
	names := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}
	start := time.Now()
	rs := cl.start(t, nil, names...)
	t.Logf("eight replicas ready in %s", time.Since(start).Round(time.Millisecond))

	const user = "eu-oauth-cluster"
	conn, err := rs[0].api.Connect(ctx, client.ConnectInput{Provider: "loopauth", ExternalUserID: user})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := rs[0].api.Complete(ctx, client.EndUser{ExternalUserID: user}, "code-cluster-1", conn.State)
	if err != nil || flow.Status != vault.FlowCompleted {
		t.Fatalf("complete: %+v %v", flow, err)
	}
	sec, err := rs[0].api.GetSecret(ctx, flow.SecretID)
	if err != nil || sec.ExpiresAt == nil || time.Until(*sec.ExpiresAt) > 5*time.Second {
		t.Fatalf("the connected secret does not expire within 5 s: %+v %v", sec, err)
	}
	sbx, err := rs[0].api.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: user})
	if err != nil {
		t.Fatal(err)
	}
	ph := placeholderOf(t, sbx, flow.SecretID)
	caPEM := []byte(sbx.CACertPEM)

	// Two sandbox connections per replica, opened (tunnel and MITM
	// handshake) by a request without the placeholder.
	const perReplica = 2
	type caller struct {
		r *replica
		c *http.Client
	}
	var callers []caller
	for _, r := range rs {
		for range perReplica {
			hc := sandboxClient(t, r.proxyAddr, sbx.ID, sbx.ProxyToken, caPEM)
			if s, err := cl.send(hc, "warm", "no-placeholder"); err != nil || s.status != http.StatusOK {
				t.Fatalf("replica %s: %v %d", r.name, err, s.status)
			}
			callers = append(callers, caller{r, hc})
		}
	}
	if n := prov.refresh.Load(); n != 0 {
		t.Fatalf("%d refreshes before the burst", n)
	}
	fire := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]sent, len(callers))
	errs := make([]error, len(callers))
	for i, cr := range callers {
		wg.Go(func() {
			<-fire
			results[i], errs[i] = cl.send(cr.c, "oauth/"+cr.r.name, ph)
		})
	}
	burst := time.Now()
	close(fire)
	wg.Wait()
	t.Logf("%d requests through %d replicas at once answered within %s", len(callers), len(rs), time.Since(burst).Round(time.Millisecond))
	want := "Bearer " + loopbackAccess(1)
	for i, s := range results {
		if errs[i] != nil || s.status != http.StatusOK || s.auth != want {
			t.Errorf("replica %s: %v %d %q; the upstream got the refreshed token: %v", callers[i].r.name, errs[i], s.status, s.denied, s.auth == want)
		}
	}
	if n, re, codes, bad := prov.refresh.Load(), prov.reused.Load(), prov.codes.Load(), prov.unwanted.Load(); n != 1 || re != 0 || codes != 1 || bad != 0 {
		t.Fatalf("the provider got %d refresh requests (%d refused as reused), %d code exchanges and %d other requests; want exactly 1 refresh, 1 exchange", n, re, codes, bad)
	}
	// The refreshed token is stored (a new version) and used from then on,
	// with no other refresh.
	if s, err := rs[0].api.GetSecret(ctx, flow.SecretID); err != nil || s.Version != sec.Version+1 {
		t.Fatalf("after the refresh: version %d (want %d): %v", s.Version, sec.Version+1, err)
	}
	for _, cr := range callers[:len(rs)] {
		if s, err := cl.send(cr.c, "oauth-after/"+cr.r.name, ph); err != nil || s.auth != want {
			t.Fatalf("replica %s after the refresh: %v %d %q", cr.r.name, err, s.status, s.denied)
		}
	}
	if n := prov.refresh.Load(); n != 1 {
		t.Fatalf("%d refreshes in all", n)
	}
	refreshed := 0
	for _, r := range rs {
		refreshed += strings.Count(r.stderr.String(), `"msg":"oauth token refreshed"`)
	}
	if refreshed != 1 {
		t.Errorf("%d replicas say they refreshed the token, want 1", refreshed)
	}
	cl.stopAll(t, rs, loopbackAccess(0), loopbackAccess(1), "rt-1-loopback", "rt-2-loopback", "cluster-client-secret-8a1f")
}
