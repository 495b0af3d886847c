package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// result is one phase's figures.
type result struct {
	Phase    phase
	Requests uint64 // answered 200 inside the window
	Elapsed  time.Duration
	P50, P99 time.Duration
	Errors   int64 // failed requests, warm-up included
	FirstErr string
	// Proxy's own resource use over the window (zero for direct phases).
	CPU    time.Duration
	HWMKiB int64
	// Audit rows that reached egressd's store from the phase's start until
	// the child had stopped (its shutdown flushes what it holds), and that
	// span (zero for phases without egressd).
	Rows     int64
	RowsSpan time.Duration
}

// rowRate is audit rows a second reaching the store over RowsSpan.
func (r *result) rowRate() float64 {
	if r.RowsSpan <= 0 {
		return 0
	}
	return float64(r.Rows) / r.RowsSpan.Seconds()
}

func (r *result) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// run runs the benchmark and writes the table to out; progress lines go to
// progress.
func run(ctx context.Context, cfg config, out, progress io.Writer) error {
	results, err := bench(ctx, cfg, progress)
	if err != nil {
		return err
	}
	report(out, cfg, results)
	return nil
}

// bench sets everything up and runs the phases in order.
func bench(ctx context.Context, cfg config, progress io.Writer) ([]*result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "egress-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	w, err := setup(dir, cfg.NoSync)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	var pg *pgStore
	if slices.ContainsFunc(cfg.Phases, func(name string) bool { ph, _ := phaseByName(name); return ph.PG }) {
		var drop func() error
		if pg, drop, err = preparePG(cfg.Store, w); err != nil {
			return nil, err
		}
		defer func() {
			if err := drop(); err != nil {
				fmt.Fprintf(progress, "egress-bench: drop schema %s: %v\n", pg.Schema, err)
			}
		}()
	}
	up, err := startUpstream(w)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.close()
	rounds := make([][]*result, len(cfg.Phases))
	for round := range cfg.Rounds {
		for i, name := range cfg.Phases {
			ph, _ := phaseByName(name)
			if cfg.Rounds > 1 {
				fmt.Fprintf(progress, "egress-bench: round %d/%d\n", round+1, cfg.Rounds)
			}
			r, err := runPhase(ctx, cfg, w, pg, up, ph, progress)
			if err != nil {
				return nil, fmt.Errorf("phase %s: %w", name, err)
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	results := make([]*result, len(cfg.Phases))
	for i, rs := range rounds {
		results[i] = median(rs)
	}
	return results, nil
}

// median folds the rounds of one phase: the median of each figure
// (requests, latencies, CPU), the sum of errors, the highest peak RSS.
func median(rs []*result) *result {
	m := *rs[0]
	mid := func(get func(*result) int64) int64 {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.Requests = uint64(mid(func(r *result) int64 { return int64(r.Requests) }))
	m.P50 = time.Duration(mid(func(r *result) int64 { return int64(r.P50) }))
	m.P99 = time.Duration(mid(func(r *result) int64 { return int64(r.P99) }))
	m.CPU = time.Duration(mid(func(r *result) int64 { return int64(r.CPU) }))
	// The median row rate: its rows and span from the same round.
	byRate := slices.Clone(rs)
	slices.SortFunc(byRate, func(a, b *result) int { return cmp.Compare(a.rowRate(), b.rowRate()) })
	m.Rows, m.RowsSpan = byRate[len(byRate)/2].Rows, byRate[len(byRate)/2].RowsSpan
	m.Errors, m.HWMKiB = 0, 0
	for _, r := range rs {
		m.Errors += r.Errors
		m.HWMKiB = max(m.HWMKiB, r.HWMKiB)
		if m.FirstErr == "" {
			m.FirstErr = r.FirstErr
		}
	}
	return &m
}

// targetFor is what the clients of ph send, through the proxy at proxyAddr.
func targetFor(cfg config, w *world, up *upstream, ph phase, proxyAddr string) target {
	t := target{URL: "https://" + net.JoinHostPort(ph.Host, up.port) + "/v1/models"}
	// What a client that holds the real key sends, and what one that holds
	// a placeholder sends.
	realAuth, phAuth := "Bearer "+w.HeaderValue, "Bearer "+w.HeaderPH
	// A PG phase sends what the phase it repeats on bbolt sends.
	switch strings.TrimSuffix(ph.Name, "-pg") {
	case "direct":
		t.Roots, t.AuthValue = w.UpstreamCA, realAuth
	case "direct-body":
		t.Roots, t.Body = w.UpstreamCA, jsonBody(cfg.BodySize, w.BodyValue)
	case "tunnel":
		t.Roots, t.AuthValue = w.UpstreamCA, realAuth
	case "mitm-header":
		t.Roots, t.AuthValue = w.EgressdCA, phAuth
	case "mitm-body":
		t.Roots, t.Body = w.EgressdCA, jsonBody(cfg.BodySize, w.BodyPH)
	case "goproxy-header":
		t.Roots, t.AuthValue = w.GoproxyCA, phAuth
	}
	if t.Body != nil {
		t.URL = "https://" + net.JoinHostPort(ph.Host, up.port) + "/v1/chat/completions"
	}
	switch ph.Proxy {
	case proxyEgressd:
		t.ProxyURL = &url.URL{Scheme: "http", Host: proxyAddr, User: url.UserPassword(w.SandboxID, w.Token)}
	case proxyGoproxy:
		t.ProxyURL = &url.URL{Scheme: "http", Host: proxyAddr}
	}
	return t
}

// profilePath inserts the phase name before path's extension.
func profilePath(path, phase string) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + phase + ext
}

func runPhase(ctx context.Context, cfg config, w *world, pg *pgStore, up *upstream, ph phase, progress io.Writer) (*result, error) {
	var ch *child
	spec := childSpec{Proxy: ph.Proxy, Dir: w.Dir, Audit: cfg.Audit, NoSync: cfg.NoSync, Redact: cfg.Redact, ProxyLog: cfg.ProxyLog,
		CPUProfile: profilePath(cfg.CPUProfile, ph.Name)}
	if ph.PG {
		spec.PGDSN, spec.PGSchema = pg.DSN, pg.Schema
	}
	if ph.Proxy != proxyNone {
		var err error
		if ch, err = startChild(ctx, spec); err != nil {
			return nil, err
		}
		defer ch.stop()
	}
	proxyAddr := ""
	if ch != nil {
		proxyAddr = ch.addr
	}
	t := targetFor(cfg, w, up, ph, proxyAddr)
	start := time.Now()
	win := window{Start: start, From: start.Add(cfg.Warmup), To: start.Add(cfg.Warmup + cfg.Duration)}
	cnt := &counters{}
	type loaded struct {
		h        *hist
		errs     int64
		firstErr string
	}
	doneCh := make(chan loaded, 1)
	go func() {
		h, errs, first := load(ctx, t, cfg.Clients, cfg.Rate, win, cnt)
		doneCh <- loaded{h, errs, first}
	}()
	stopProgress := startProgress(progress, ph.Name, win, cnt)
	var before, after procStats
	var callErr error
	if sleepUntil(ctx, win.From) && ch != nil {
		before, callErr = ch.call("begin")
	}
	if sleepUntil(ctx, win.To) && ch != nil && callErr == nil {
		after, callErr = ch.call("end")
	}
	ld := <-doneCh
	stopProgress()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if callErr != nil {
		return nil, callErr
	}
	r := &result{Phase: ph, Requests: ld.h.n, Elapsed: cfg.Duration, P50: ld.h.quantile(0.50), P99: ld.h.quantile(0.99),
		Errors: ld.errs, FirstErr: ld.firstErr, CPU: after.CPU - before.CPU, HWMKiB: after.HWMKiB}
	if ph.Proxy == proxyEgressd {
		ch.stop()
		r.RowsSpan = time.Since(start)
		var err error
		if r.Rows, err = countAuditRows(spec, w.TenantID, start); err != nil {
			return nil, fmt.Errorf("count audit rows: %w", err)
		}
	}
	return r, nil
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// startProgress writes one line a second while the phase runs.
func startProgress(wr io.Writer, name string, win window, cnt *counters) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				n := cnt.done.Load()
				stage := "measuring"
				if now.Before(win.From) {
					stage = "warm-up"
				} else if now.After(win.To) {
					stage = "draining"
				}
				fmt.Fprintf(wr, "egress-bench: %-15s %-9s %5.1fs/%.0fs  %8d ok  %6d req/s  %d errors\n",
					name, stage, now.Sub(win.Start).Seconds(), win.To.Sub(win.Start).Seconds(), n, n-last, cnt.errs.Load())
				last = n
			}
		}
	}()
	return func() { close(done); <-finished }
}
