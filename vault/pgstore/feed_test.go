package pgstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/egressd/egressd/vault/storage"
)

// topics records what a Store's subscribers are delivered.
type topics struct {
	mu  sync.Mutex
	got []string
}

func subscribe(s *Store) *topics {
	r := &topics{}
	s.Subscribe(func(t string) {
		r.mu.Lock()
		r.got = append(r.got, t)
		r.mu.Unlock()
	})
	return r
}

func (r *topics) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *topics) has(t string) bool { return slices.Contains(r.list(), t) }

// waitFor polls cond until it holds, failing the test after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func publish(t *testing.T, s *Store, topic string) {
	t.Helper()
	if err := s.Update(func(tx storage.Tx) error { return s.Publish(tx, topic) }); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

// openNamed opens a replica on schema whose connections carry app as
// application_name (its listener's: app-listener).
func openNamed(t *testing.T, schema, app string, opts Options) *Store {
	t.Helper()
	dsn := testDSN(t)
	sep := " "
	if strings.Contains(dsn, "://") {
		sep = "&"
		if !strings.Contains(dsn, "?") {
			sep = "?"
		}
	}
	opts.Schema = schema
	s, err := Open(context.Background(), dsn+sep+"application_name="+app, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// killListener ends the listener sessions named app-listener, as an
// operator's pg_terminate_backend (or a network failure) would.
func killListener(t *testing.T, via *Store, app string) {
	t.Helper()
	var n int
	err := via.Pool().QueryRow(context.Background(),
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app+"-listener").Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminated %d listener sessions of %s: %v", n, app, err)
	}
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	g.Write(&m)
	return m.GetGauge().GetValue()
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

func histogramCount(h prometheus.Histogram) uint64 {
	var m dto.Metric
	h.Write(&m)
	return m.GetHistogram().GetSampleCount()
}

// A committed Publish reaches every other Store on the schema, in commit
// order, and not its own; a rolled back one reaches nobody.
func TestFeedDelivers(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	a, b := openNamed(t, schema, "feed-a", Options{}), openNamed(t, schema, "feed-b", Options{})
	ra, rb := subscribe(a), subscribe(b)
	if !a.Healthy() || !b.Healthy() {
		t.Fatal("a store is not healthy after Open")
	}
	for _, tp := range []string{"t1", "t2", "t1"} {
		publish(t, a, tp)
	}
	rolledBack := errors.New("rolled back")
	if err := a.Update(func(tx storage.Tx) error {
		if err := a.Publish(tx, "never"); err != nil {
			return err
		}
		return rolledBack
	}); !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}
	publish(t, a, "t3")
	waitFor(t, "b to hear t3", func() bool { return rb.has("t3") })
	if got := rb.list(); !slices.Equal(got, []string{"t1", "t2", "t1", "t3"}) && !slices.Equal(got, []string{"t1", "t2", "t3"}) {
		t.Fatalf("b heard %q", got)
	}
	// b's change, heard by a after a's own (a reads its log in order).
	publish(t, b, "from-b")
	waitFor(t, "a to hear from-b", func() bool { return ra.has("from-b") })
	if got := ra.list(); !slices.Equal(got, []string{"from-b"}) {
		t.Fatalf("a heard %q (its own changes, or a rolled back one)", got)
	}
	if n := histogramCount(b.feed.m.lag); n < 3 {
		t.Errorf("b's lag histogram holds %d deliveries", n)
	}
}

// Publish needs a write transaction of its own store and a valid topic.
func TestPublishRefusals(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	a, b := ss[0], ss[1]
	if err := a.View(func(tx storage.Tx) error { return a.Publish(tx, "t") }); !errors.Is(err, storage.ErrTxNotWritable) {
		t.Errorf("Publish in a View: %v", err)
	}
	if err := a.Update(func(tx storage.Tx) error { return b.Publish(tx, "t") }); !errors.Is(err, ErrForeignTx) {
		t.Errorf("Publish in another store's Update: %v", err)
	}
	for _, topic := range []string{"", strings.Repeat("x", storage.MaxTopicSize+1), "a\x00b", "\xff"} {
		if err := a.Update(func(tx storage.Tx) error { return a.Publish(tx, topic) }); !errors.Is(err, ErrTopic) {
			t.Errorf("Publish(%q): %v", topic, err)
		}
	}
	publish(t, a, strings.Repeat("x", storage.MaxTopicSize))
}

// A listener whose connection is killed is unhealthy at once, reconnects,
// delivers what was published meanwhile, and only then is healthy again.
func TestFeedCatchesUpAfterReconnect(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	a := openNamed(t, schema, "catch-a", Options{})
	b := openNamed(t, schema, "catch-b", Options{ReconnectDelay: time.Second})
	rb := subscribe(b)
	publish(t, a, "before")
	waitFor(t, "b to hear before", func() bool { return rb.has("before") })

	killListener(t, a, "catch-b")
	waitFor(t, "b to turn unhealthy", func() bool { return !b.Healthy() })
	publish(t, a, "missed")
	healthy := b.Healthy()
	heard := rb.has("missed")
	if healthy || heard {
		t.Fatalf("right after the kill: healthy %v, heard %v", healthy, heard)
	}
	if gauge(b.feed.m.up) != 0 {
		t.Error("egressd_store_listener_up is not 0 while the listener is down")
	}
	waitFor(t, "b to be healthy again", b.Healthy)
	if !rb.has("missed") {
		t.Fatal("b turned healthy before it delivered what it missed")
	}
	if got := counter(b.feed.m.reconnects); got != 1 {
		t.Errorf("egressd_store_listener_reconnects_total = %v, want 1", got)
	}
	if gauge(b.feed.m.up) != 1 {
		t.Error("egressd_store_listener_up is not 1 after the catch-up")
	}
	publish(t, a, "after")
	waitFor(t, "b to hear after", func() bool { return rb.has("after") })
}

// A listener that was away while the log was pruned past what it had seen
// delivers TopicAll (and what it cannot vouch for, nothing else) before it
// is healthy.
func TestFeedAllAfterPrune(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	a := openNamed(t, schema, "prune-a", Options{})
	b := openNamed(t, schema, "prune-b", Options{ReconnectDelay: time.Second})
	rb := subscribe(b)
	killListener(t, a, "prune-b")
	waitFor(t, "b to turn unhealthy", func() bool { return !b.Healthy() })
	publish(t, a, "pruned")
	if _, err := a.Pool().Exec(context.Background(), a.feed.q.prune, 0.0); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := a.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+quoted(schema, "changes")).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d rows left after pruning (%v)", left, err)
	}
	waitFor(t, "b to be healthy again", b.Healthy)
	if got := rb.list(); !slices.Equal(got, []string{storage.TopicAll}) {
		t.Fatalf("b heard %q, want [%s]", got, storage.TopicAll)
	}
	publish(t, a, "next")
	waitFor(t, "b to hear next", func() bool { return rb.has("next") })
}

// A log that goes back below what a listener saw (the schema's log made
// anew) is TopicAll too, and the listener goes on from where the log is.
func TestFeedAllWhenLogGoesBack(t *testing.T) {
	ss := openReplicas(t, 2, Options{})
	a, b := ss[0], ss[1]
	rb := subscribe(b)
	for range 3 {
		publish(t, a, "t")
	}
	waitFor(t, "b to hear t", func() bool { return len(rb.list()) > 0 })
	schema := a.Schema()
	if _, err := a.Pool().Exec(context.Background(), "TRUNCATE "+quoted(schema, "changes")+" RESTART IDENTITY"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to hear TopicAll", func() bool { return rb.has(storage.TopicAll) })
	publish(t, a, "after-reset")
	waitFor(t, "b to hear after-reset", func() bool { return rb.has("after-reset") })
}

// A listener that hears nothing from the server within ListenerTimeout
// (here: held up by a slow subscriber) is unhealthy until it has.
func TestFeedUnhealthyWhenSilent(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	a := openNamed(t, schema, "silent-a", Options{})
	b := openNamed(t, schema, "silent-b", Options{ListenerTimeout: 200 * time.Millisecond})
	release := make(chan struct{})
	b.Subscribe(func(t string) {
		if t == "slow" {
			<-release
		}
	})
	publish(t, a, "slow")
	waitFor(t, "b to turn unhealthy", func() bool { return !b.Healthy() })
	close(release)
	waitFor(t, "b to be healthy again", b.Healthy)
}

// Healthy is false after Close.
func TestFeedClosed(t *testing.T) {
	s := openTest(t, Options{})
	if !s.Healthy() {
		t.Fatal("not healthy after Open")
	}
	s.Close()
	if s.Healthy() {
		t.Fatal("healthy after Close")
	}
}

// Long schema names get a channel of PostgreSQL's length.
func TestChannelName(t *testing.T) {
	if got := channelName("egressd"); got != "egressd_changes" {
		t.Errorf("channelName(egressd) = %q", got)
	}
	long := strings.Repeat("s", 63)
	if got := channelName(long); len(got) > 63 || got == channelName(long[:62]+"t") {
		t.Errorf("channelName of a 63-byte schema: %q", got)
	}
}

func quoted(schema, table string) string {
	return `"` + strings.ReplaceAll(schema, `"`, `""`) + `"."` + table + `"`
}
