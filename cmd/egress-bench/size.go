package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// sizeReport is what one -size run measured.
type sizeReport struct {
	Gen      *generated
	GenTook  time.Duration
	Resolve  resolveFigures
	Startup  []time.Duration // serve's start to /readyz 200: first start, restart
	Calls    []apiTiming
	Mem      memory // serve's, after the calls
	DirBytes int64  // every file of the data dir, after serve ran
	Rows     int
}

// runSize generates the data set in cfg.Dir, measures the resolver on it
// in this process, then egressd serve on it, and writes the figures.
func runSize(ctx context.Context, cfg sizeConfig, out, progress io.Writer) error {
	if err := cfg.check(); err != nil {
		return err
	}
	created := false
	if _, err := os.Stat(cfg.Dir); errors.Is(err, fs.ErrNotExist) {
		created = true
	}
	if created && !cfg.Keep {
		defer os.RemoveAll(cfg.Dir)
	}
	rep, err := measureSize(ctx, cfg, progress)
	if err != nil {
		return err
	}
	reportSize(out, cfg, rep)
	return nil
}

func measureSize(ctx context.Context, cfg sizeConfig, progress io.Writer) (*sizeReport, error) {
	rep := &sizeReport{Rows: cfg.AuditRows}
	bin := cfg.Egressd
	if bin == "" {
		tmp, err := os.MkdirTemp("", "egress-bench-size-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if bin, err = buildEgressd(ctx, tmp); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	g, err := generate(cfg, progress)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	rep.Gen, rep.GenTook = g, time.Since(t0)
	fmt.Fprintf(progress, "egress-bench: size: generated in %.1fs; resolver\n", rep.GenTook.Seconds())
	if rep.Resolve, err = measureResolve(cfg, g); err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	fmt.Fprintf(progress, "egress-bench: size: egressd serve\n")
	p, took, err := startServe(ctx, bin, cfg.Dir)
	if err != nil {
		return nil, err
	}
	rep.Startup = append(rep.Startup, took)
	rep.Calls, err = apiCalls(ctx, p, g, cfg.Calls)
	rep.Mem = p.memory()
	if serr := p.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if p, took, err = startServe(ctx, bin, cfg.Dir); err != nil {
		return nil, err
	}
	rep.Startup = append(rep.Startup, took)
	if err := p.stop(); err != nil {
		return nil, err
	}
	rep.DirBytes = sizeDirFiles(cfg.Dir)
	return rep, nil
}

// resolveFigures are the resolver's, at size, in this process.
type resolveFigures struct {
	Warm, Cold testing.BenchmarkResult
	// The LRU: every (sandbox, name) pair of every tenant resolved twice
	// over; the cache's length and the live heap after each pass.
	Pairs          int
	Found          int // pairs that resolved (twice: both passes)
	CacheSize      int
	HeapBase       uint64 // the vault open, the resolver empty
	Heap1, Heap2   uint64 // after the first and the second pass
	CacheLen       int
	PassTook       time.Duration // of the first pass: mostly cold resolves
	ResolvedPerSec float64
}

// measureResolve opens the generated vault (serve not running) with a
// resolver as serve makes it, and measures a warm and a cold Resolve of a
// sandbox of the large tenant (testing.Benchmark: ns and allocations a
// call), then fills the LRU with every (sandbox, name) pair.
func measureResolve(cfg sizeConfig, g *generated) (resolveFigures, error) {
	var f resolveFigures
	dir := datadir.Dir(cfg.Dir)
	key, err := vault.LoadMasterKeyFile(keySource(cfg.Dir).File)
	if err != nil {
		return f, err
	}
	node, err := dir.NodeID()
	if err != nil {
		return f, err
	}
	st, err := vault.Open(vault.Config{Path: dir.DB(), MasterKey: key, NodeID: node})
	if err != nil {
		return f, err
	}
	defer st.Close()
	res, err := resolver.New(resolver.Config{Store: st, Fresh: st.ChangesHealthy})
	if err != nil {
		return f, err
	}
	ctx := context.Background()
	big := &g.Tenants[0]
	sbx, name := big.Sandboxes[len(big.Sandboxes)/2], "KEY_05"
	if r, err := res.Resolve(ctx, sbx, name); err != nil || r == nil {
		return f, fmt.Errorf("resolve %s for a sandbox of the large tenant: %v (nothing resolved: %t)", name, err, r == nil)
	}
	var benchErr error
	f.Warm = testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := res.Resolve(ctx, sbx, name); err != nil {
				benchErr = err
			}
		}
	})
	f.Cold = testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			res.Invalidate(big.ID)
			if _, err := res.Resolve(ctx, sbx, name); err != nil {
				benchErr = err
			}
		}
	})
	if benchErr != nil {
		return f, benchErr
	}
	// The LRU: a fresh resolver of serve's default size.
	f.HeapBase = liveHeap()
	res, err = resolver.New(resolver.Config{Store: st, Fresh: st.ChangesHealthy})
	if err != nil {
		return f, err
	}
	names := []string{"BOUND_KEY"}
	for i := range namePool {
		names = append(names, fmt.Sprintf("KEY_%02d", i))
	}
	pass := func() error {
		for i := range g.Tenants {
			for _, s := range g.Tenants[i].Sandboxes {
				for _, n := range names {
					_, err := res.Resolve(ctx, s, n)
					switch {
					case err == nil:
						f.Found++
					case !errors.Is(err, resolver.ErrNoSecret):
						return err
					}
				}
			}
		}
		return nil
	}
	t0 := time.Now()
	if err := pass(); err != nil {
		return f, err
	}
	f.PassTook = time.Since(t0)
	f.Pairs = cfg.Sandboxes * len(names)
	f.ResolvedPerSec = float64(f.Pairs) / f.PassTook.Seconds()
	f.Heap1 = liveHeap()
	if err := pass(); err != nil {
		return f, err
	}
	f.Heap2 = liveHeap()
	f.CacheLen = res.Len()
	f.CacheSize = 1 << 16 // resolver.Config's default, which serve uses
	runtime.KeepAlive(res)
	return f, nil
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func reportSize(out io.Writer, cfg sizeConfig, r *sizeReport) {
	g := r.Gen
	fmt.Fprintf(out, "\nOne node at size: %d tenants, %d sandboxes, %d secrets (+%d bindings), %d audit rows; GOMAXPROCS %d, %s, load average %s\n\n",
		cfg.Tenants, cfg.Sandboxes, cfg.Secrets, cfg.Sandboxes, cfg.AuditRows, runtime.GOMAXPROCS(0), runtime.Version(), loadAverage())
	if len(g.Tenants) > 1 {
		fmt.Fprintf(out, "Large tenant: %d sandboxes, %d secrets, %d audit rows; a typical one: %d, %d, %d.\n\n",
			len(g.Tenants[0].Sandboxes), len(g.Tenants[0].Secrets), g.Tenants[0].Rows, len(g.Tenants[1].Sandboxes), len(g.Tenants[1].Secrets), g.Tenants[1].Rows)
	}
	fmt.Fprintf(out, "Generation: %.1fs in all (the vault opened without fsync, one transaction a record, audit rows %d a call):", r.GenTook.Seconds(), auditBatch)
	for _, s := range g.Stages {
		fmt.Fprintf(out, " %s %.1fs;", s.Name, s.Took.Seconds())
	}
	fmt.Fprintln(out)
	perRow := "—"
	if r.Rows > 0 {
		perRow = fmt.Sprintf("%.0f B (the file's growth from the audit rows ÷ rows: %.0f B)", float64(g.DBBytes)/float64(r.Rows), float64(g.DBBytes-g.DBBytesBeforeAudit)/float64(r.Rows))
	}
	fmt.Fprintf(out, "Vault file: %.1f MiB (%.1f MiB before the audit rows); a row: %s; the data dir after serve ran: %.1f MiB\n\n",
		mib(g.DBBytes), mib(g.DBBytesBeforeAudit), perRow, mib(r.DirBytes))
	rf := r.Resolve
	fmt.Fprintln(out, "| measure | figure |")
	fmt.Fprintln(out, "| --- | ---: |")
	fmt.Fprintf(out, "| warm Resolve (cache hit) | %.0f ns/op, %d allocs/op |\n", float64(rf.Warm.NsPerOp()), rf.Warm.AllocsPerOp())
	fmt.Fprintf(out, "| cold Resolve (the walk in the vault, value opened) | %.1f µs/op, %d allocs/op |\n", float64(rf.Cold.NsPerOp())/1e3, rf.Cold.AllocsPerOp())
	fmt.Fprintf(out, "| LRU: %d (sandbox, name) pairs resolved twice (%d found a secret) | %.0f resolves/s (first pass); %d entries cached (size %d); live heap %.1f → %.1f → %.1f MiB |\n",
		rf.Pairs, rf.Found/2, rf.ResolvedPerSec, rf.CacheLen, rf.CacheSize, mib(int64(rf.HeapBase)), mib(int64(rf.Heap1)), mib(int64(rf.Heap2)))
	for i, d := range r.Startup {
		what := "serve start to /readyz 200, first start on the data set"
		if i > 0 {
			what = "serve start to /readyz 200, restart"
		}
		fmt.Fprintf(out, "| %s | %.0f ms |\n", what, float64(d)/float64(time.Millisecond))
	}
	fmt.Fprintf(out, "| serve's memory after the calls | RSS %.0f MiB (anonymous %.0f, file %.0f), peak %.0f MiB |\n\n",
		float64(r.Mem.RSS)/1024, float64(r.Mem.Anon)/1024, float64(r.Mem.File)/1024, float64(r.Mem.HWM)/1024)
	fmt.Fprintln(out, "| admin API call (page: the dashboard asks it as a page opens, or with one filter) | page | calls | items | bytes | p50 | p99 |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, c := range r.Calls {
		items := "—"
		if c.Items >= 0 {
			items = fmt.Sprint(c.Items)
		}
		page := ""
		if c.Page {
			page = "yes"
		}
		fmt.Fprintf(out, "| %s | %s | %d | %s | %d | %s | %s |\n", c.Name, page, c.N, items, c.Bytes, fmtDur(c.P50), fmtDur(c.P99))
	}
	fmt.Fprintln(out)
	if rf.Warm.NsPerOp() > 0 {
		fmt.Fprintf(out, "target: warm Resolve < 1 µs and allocation-free: %d ns, %d allocs: %s\n", rf.Warm.NsPerOp(), rf.Warm.AllocsPerOp(),
			verdict(rf.Warm.NsPerOp() < 1000 && rf.Warm.AllocsPerOp() == 0))
	}
	var worst, worstAny apiTiming
	for _, c := range r.Calls {
		if c.Page && c.P99 > worst.P99 {
			worst = c
		}
		if !strings.Contains(c.Name, "…/env") && c.P99 > worstAny.P99 {
			worstAny = c
		}
	}
	fmt.Fprintf(out, "target: the dashboard's list and audit pages (as they open, or with one filter) answer < 100 ms: the slowest p99 %s (%s): %s\n",
		fmtDur(worst.P99), worst.Name, verdict(worst.P99 < 100*time.Millisecond))
	fmt.Fprintf(out, "(the slowest of every list and audit call above, wider views included: p99 %s, %s)\n", fmtDur(worstAny.P99), worstAny.Name)
	if r.Rows > 0 {
		// The rows' own share: what the file grew by as they went in (its
		// tenants, sandboxes and secrets were there before them).
		b := float64(g.DBBytes-g.DBBytesBeforeAudit) / float64(r.Rows)
		fmt.Fprintf(out, "target: ≤ 500 B on disk an audit row, indexes included: %.0f B (the file's growth from the audit rows ÷ rows): %s\n", b, verdict(b <= 500))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
