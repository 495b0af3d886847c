package pgstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
)

// The cache invalidation of issue 14 across replicas: vault Stores on one
// schema, each with its own resolver, as egressd serve builds them
// (resolver.Config.Fresh is the store's ChangesHealthy).

type replica struct {
	name  string
	pg    *pgstore.Store
	store *vault.Store
	r     *resolver.Resolver
}

// cluster is the replicas' shared setup: one tenant, one sandbox, one
// tenant-wide secret "openai" on api.example.com.
type cluster struct {
	t      *testing.T
	dsn    string
	schema string
	key    *vault.MasterKey
	tenant string
	sbx    string
	secret string
}

func newCluster(t *testing.T) *cluster {
	dsn := pgstore.TestDSN(t)
	return &cluster{t: t, dsn: dsn, schema: pgstore.FreshSchema(t, dsn), key: vault.NewMasterKey()}
}

// open starts a replica whose listener session is named name-listener.
func (c *cluster) open(name string, opts pgstore.Options) *replica {
	t := c.t
	t.Helper()
	sep := " "
	if strings.Contains(c.dsn, "://") {
		sep = "&"
		if !strings.Contains(c.dsn, "?") {
			sep = "?"
		}
	}
	opts.Schema = c.schema
	pg, err := pgstore.Open(context.Background(), c.dsn+sep+"application_name="+name, opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.Open(vault.Config{Backend: pg, JournalPath: filepath.Join(t.TempDir(), "journal"), MasterKey: c.key, NoSync: true})
	if err != nil {
		pg.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := resolver.New(resolver.Config{Store: st, Fresh: st.ChangesHealthy})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{name: name, pg: pg, store: st, r: r}
}

// setup makes the tenant, sandbox and secret through rep.
func (c *cluster) setup(rep *replica, value string) {
	t := c.t
	tn, _, err := rep.store.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	sbx, _, err := rep.store.CreateSandbox(tn.ID, vault.SandboxInput{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rep.store.UpsertSecret(tn.ID, vault.SecretInput{Name: "openai", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	c.tenant, c.sbx, c.secret = tn.ID, sbx.ID, res.Secret.ID
}

func (c *cluster) rotate(rep *replica, value string) {
	c.t.Helper()
	if _, err := rep.store.RotateSecret(c.tenant, c.secret, vault.RotateInput{Value: value}); err != nil {
		c.t.Fatal(err)
	}
}

// resolve is the value rep's resolver gives for the secret ("" with
// ErrNoSecret).
func (c *cluster) resolve(rep *replica) (string, error) {
	res, err := rep.r.Resolve(context.Background(), c.sbx, "openai")
	if errors.Is(err, resolver.ErrNoSecret) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(res.Value.Reveal()), nil
}

func (c *cluster) mustResolve(rep *replica, want string) {
	c.t.Helper()
	if got, err := c.resolve(rep); err != nil || got != want {
		c.t.Fatalf("%s resolves %q (%v), want %q", rep.name, got, err, want)
	}
}

// await polls rep's resolver until it gives want; it fails after 15s
// (the assertion is that the change arrives, not how fast).
func (c *cluster) await(rep *replica, want string) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		got, err := c.resolve(rep)
		if err != nil {
			c.t.Fatalf("%s: %v", rep.name, err)
		}
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > 15*time.Second {
			c.t.Fatalf("%s still resolves %q, want %q", rep.name, got, want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func waitHealthy(t *testing.T, rep *replica, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for rep.store.ChangesHealthy() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: ChangesHealthy still %v", rep.name, !want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A rotate through A is what B's next Resolve gives once A's change
// arrives; the time from A's answer to B's first new value is logged over
// 100 rotations.
func TestClusterRotateSeenByOtherReplica(t *testing.T) {
	c := newCluster(t)
	a, b := c.open("rot-a", pgstore.Options{}), c.open("rot-b", pgstore.Options{})
	c.setup(a, "v0")
	c.mustResolve(b, "v0")
	c.mustResolve(b, "v0") // cached
	const n = 100
	lags := make([]time.Duration, 0, n)
	for i := 1; i <= n; i++ {
		v := "v" + strconv.Itoa(i)
		c.rotate(a, v)
		c.mustResolve(a, v) // A's own write: before the rotate returned
		lags = append(lags, c.await(b, v))
	}
	slices.Sort(lags)
	t.Logf("rotate on A to B's Resolve, %d rotations: p50 %v, p99 %v, max %v", n, lags[n/2], lags[n*99/100-1], lags[n-1])
	for _, col := range b.pg.Collectors() {
		if h, ok := col.(prometheus.Histogram); ok {
			var m dto.Metric
			h.Write(&m)
			hm := m.GetHistogram()
			var buckets []string
			for _, bk := range hm.GetBucket() {
				buckets = append(buckets, strconv.FormatFloat(bk.GetUpperBound(), 'g', -1, 64)+"s:"+strconv.FormatUint(bk.GetCumulativeCount(), 10))
			}
			t.Logf("B's egressd_store_invalidation_lag_seconds: %d deliveries, mean %v; cumulative buckets %s", hm.GetSampleCount(),
				time.Duration(hm.GetSampleSum()/float64(hm.GetSampleCount())*float64(time.Second)), strings.Join(buckets, " "))
		}
	}
}

// A disable through B is refused by A.
func TestClusterDisableRefusedByOtherReplica(t *testing.T) {
	c := newCluster(t)
	a, b := c.open("dis-a", pgstore.Options{}), c.open("dis-b", pgstore.Options{})
	c.setup(a, "v0")
	c.mustResolve(a, "v0")
	if u, err := a.r.MayUse(context.Background(), c.sbx, "api.example.com"); err != nil || !u.Any {
		t.Fatalf("MayUse before: %+v %v", u, err)
	}
	if _, err := b.store.SetDisabled(c.tenant, c.secret, true); err != nil {
		t.Fatal(err)
	}
	c.mustResolve(b, "")
	c.await(a, "")
	if u, err := a.r.MayUse(context.Background(), c.sbx, "api.example.com"); err != nil || u.Any {
		t.Fatalf("MayUse after the disable: %+v %v", u, err)
	}
	// And back: an enable through B is used by A.
	if _, err := b.store.SetDisabled(c.tenant, c.secret, false); err != nil {
		t.Fatal(err)
	}
	c.await(a, "v0")
}

// B's listener connection is killed and A rotates meanwhile: B never
// gives the old value, not once. First with B idle while it is down (its
// cache holds the old value: only the catch-up can drop it), then with B
// resolving in a loop from before the rotate until after it caught up,
// then with the change log pruned past what B saw (the catch-up drops
// everything B cached).
func TestClusterListenerLossNeverStale(t *testing.T) {
	c := newCluster(t)
	a := c.open("loss-a", pgstore.Options{})
	b := c.open("loss-b", pgstore.Options{ReconnectDelay: time.Second})
	c.setup(a, "v0")

	// down kills B's listener and waits until B knows; rotate goes
	// through A while B is down (checked after it returned).
	down := func() {
		t.Helper()
		pgstore.KillListener(t, a.pg, "loss-b")
		waitHealthy(t, b, false)
	}
	rotateWhileDown := func(v string) {
		t.Helper()
		c.rotate(a, v)
		if b.store.ChangesHealthy() {
			t.Fatal("B reconnected before the rotate: pick a longer ReconnectDelay")
		}
	}

	// 1: idle while down.
	c.mustResolve(b, "v0")
	down()
	rotateWhileDown("v1")
	waitHealthy(t, b, true)
	c.mustResolve(b, "v1")

	// 2: hammered while down, and on until well after it caught up.
	c.mustResolve(b, "v1")
	down()
	rotateWhileDown("v2")
	var stale, whileDown, total atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		after := 0
		for after < 2000 {
			healthy := b.store.ChangesHealthy()
			got, err := c.resolve(b)
			switch {
			case err != nil:
				firstErr.CompareAndSwap(nil, err)
			case got != "v2":
				stale.Add(1)
			}
			total.Add(1)
			if healthy {
				after++
			} else {
				whileDown.Add(1)
			}
		}
	}()
	<-done
	if err := firstErr.Load(); err != nil {
		t.Fatalf("Resolve on B: %v", err)
	}
	if stale.Load() != 0 {
		t.Fatalf("B gave the old value %d times of %d", stale.Load(), total.Load())
	}
	if whileDown.Load() == 0 {
		t.Fatal("B was never asked while it was down")
	}
	t.Logf("B: %d Resolves, %d of them while its listener was down; none stale", total.Load(), whileDown.Load())

	// 3: the log pruned past what B saw.
	c.mustResolve(b, "v2")
	down()
	rotateWhileDown("v3")
	if err := a.pg.PruneAll(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b, true)
	c.mustResolve(b, "v3")
}
