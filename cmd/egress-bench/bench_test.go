package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/pgtest"
)

// TestMain lets the test binary serve as a proxy child, as the command does.
func TestMain(m *testing.M) {
	if spec, ok := childSpecFromEnv(); ok {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// A one-second, four-client run of every phase: each answers requests, none
// fails (the upstream refuses a request whose real value did not arrive),
// the MITM phases' audit rows reach the store, and the table has a row per
// phase. With EGRESSD_TEST_POSTGRES set (.ci/run step 2b) mitm-header-pg
// runs too, on a schema of its own there.
func TestSmokeEveryPhase(t *testing.T) {
	store := os.Getenv(pgtest.Env)
	if store == "" {
		t.Logf("mitm-header-pg not run: set %s to a PostgreSQL DSN (.ci/run step 2b runs it in pg_virtualenv)", pgtest.Env)
	}
	cfg := config{Clients: 4, Duration: time.Second, Warmup: 200 * time.Millisecond, Rounds: 1, Audit: "sync", Redact: true,
		ProxyLog: "json", BodySize: 64 << 10, Phases: defaultPhases(store), Store: store}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	results, err := bench(ctx, cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, cfg, results)
	t.Log("\n" + out.String())
	if len(results) != len(cfg.Phases) {
		t.Fatalf("%d results for %d phases", len(results), len(cfg.Phases))
	}
	for _, r := range results {
		if r.Requests == 0 || r.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors (first: %s)", r.Phase.Name, r.Requests, r.Errors, r.FirstErr)
		}
		if r.Phase.Proxy != proxyNone && (r.CPU <= 0 || r.HWMKiB <= 0) {
			t.Errorf("%s: proxy CPU %s, peak RSS %d KiB: the child's stats are missing", r.Phase.Name, r.CPU, r.HWMKiB)
		}
		// Every request of a MITM phase with a placeholder makes one row
		// (its final row replaces the first): at least those of the window.
		if r.Phase.Proxy == proxyEgressd && r.Phase.Host == hostAPI && (r.Rows < int64(r.Requests) || r.RowsSpan <= 0) {
			t.Errorf("%s: %d audit rows in the store over %s for %d requests in the window", r.Phase.Name, r.Rows, r.RowsSpan, r.Requests)
		}
		if !strings.Contains(out.String(), "| "+r.Phase.Name+" |") {
			t.Errorf("no row for %s in the table", r.Phase.Name)
		}
	}
	if !strings.Contains(progress.String(), "req/s") {
		t.Errorf("no progress line: %q", progress.String())
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d < -c.want/50 || d > c.want/50 {
			t.Errorf("q%.2f = %s, want %s ± 2%%", c.q, got, c.want)
		}
	}
}

// An open-loop run keeps to its rate: 4 clients offered 200 req/s for one
// second answer close to 200 requests, not as many as they could.
func TestOpenLoopKeepsRate(t *testing.T) {
	cfg := config{Clients: 4, Rate: 200, Duration: time.Second, Warmup: 200 * time.Millisecond, Rounds: 1, Audit: "sync", Redact: true,
		ProxyLog: "json", BodySize: 64 << 10, Phases: []string{"direct", "mitm-header"}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := bench(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report(&out, cfg, results)
	t.Log("\n" + out.String())
	for _, r := range results {
		// Requests due in the window and answered inside it: about 200,
		// minus those due in its last moments.
		if r.Requests < 150 || r.Requests > 201 || r.Errors != 0 {
			t.Errorf("%s: %d requests (%d errors) in 1s at 200 req/s", r.Phase.Name, r.Requests, r.Errors)
		}
	}
	if !strings.Contains(out.String(), "open loop at 200 req/s") {
		t.Errorf("the report does not say it was an open loop:\n%s", out.String())
	}
}

// mitm-header-pg needs a store: without -store it is not among the default
// phases, and asking for it is refused before anything starts.
func TestPGPhaseNeedsStore(t *testing.T) {
	if slices.Contains(defaultPhases(""), "mitm-header-pg") || !slices.Contains(defaultPhases("postgres://x"), "mitm-header-pg") {
		t.Errorf("default phases: %v without a store, %v with one", defaultPhases(""), defaultPhases("postgres://x"))
	}
	cfg := config{Clients: 1, Duration: time.Second, Rounds: 1, Audit: "sync", ProxyLog: "json", BodySize: 64 << 10, Phases: []string{"mitm-header-pg"}}
	if err := cfg.check(); err == nil || !strings.Contains(err.Error(), "-store") {
		t.Fatalf("mitm-header-pg without -store: %v", err)
	}
}
