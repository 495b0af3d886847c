package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Targets for egressd's MITM with header substitution (issue 15: against
// the bare goproxy, 0.9× in the audit modes that write a row before the
// value leaves, 1.0× with async), and of issue 14 for the same on the
// PostgreSQL store (the hot path is served from the resolver's cache, so
// the store should barely show).
const (
	targetAddedP99 = 2 * time.Millisecond
	targetPGVsBolt = 0.9
)

// targetRateVsGoproxy is the req/s of mitm-header against goproxy-header
// that audit mode mode is to reach.
func targetRateVsGoproxy(mode string) float64 {
	if mode == "async" {
		return 1.0
	}
	return 0.9
}

// report writes the table (Markdown) and the verdict on the targets.
func report(out io.Writer, cfg config, results []*result) {
	byName := map[string]*result{}
	for _, r := range results {
		byName[r.Phase.Name] = r
	}
	loop := "closed loop"
	if cfg.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f req/s", cfg.Rate)
	}
	fmt.Fprintf(out, "\n%d clients (%s), %s per phase after %s warm-up, median of %d round(s), audit %s, redact %t, %d-byte bodies, GOMAXPROCS %d, %s, load average %s\n\n",
		cfg.Clients, loop, cfg.Duration, cfg.Warmup, cfg.Rounds, cfg.Audit, cfg.Redact, cfg.BodySize, runtime.GOMAXPROCS(0), runtime.Version(), loadAverage())
	fmt.Fprintln(out, "| phase | req/s | ×direct | p50 | ×direct | p99 | ×direct | p99 added | errors | proxy CPU s | CPU µs/req | proxy peak RSS |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		base := byName[r.Phase.Baseline]
		ratio := func(a, b float64) string {
			if base == nil || b == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		added := "—"
		if base != nil && base != r {
			added = fmtDur(r.P99 - base.P99)
		}
		cpu, perReq, rss := "—", "—", "—"
		if r.Phase.Proxy != proxyNone {
			cpu = fmt.Sprintf("%.2f", r.CPU.Seconds())
			if r.Requests > 0 {
				perReq = fmt.Sprintf("%.0f", float64(r.CPU.Microseconds())/float64(r.Requests))
			}
			rss = fmt.Sprintf("%.0f MiB", float64(r.HWMKiB)/1024)
		}
		var br, b50, b99 float64
		if base != nil {
			br, b50, b99 = base.rate(), float64(base.P50), float64(base.P99)
		}
		fmt.Fprintf(out, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			r.Phase.Name, r.rate(), ratio(r.rate(), br), fmtDur(r.P50), ratio(float64(r.P50), b50),
			fmtDur(r.P99), ratio(float64(r.P99), b99), added, r.Errors, cpu, perReq, rss)
	}
	fmt.Fprintln(out)
	for _, r := range results {
		if r.RowsSpan > 0 {
			store := "bbolt"
			if r.Phase.PG {
				store = "PostgreSQL"
			}
			fmt.Fprintf(out, "audit rows that reached the store (%s), %s: %d from the phase's start until its proxy had stopped (%.1fs, warm-up and shutdown included) = %.0f rows/s\n",
				store, r.Phase.Name, r.Rows, r.RowsSpan.Seconds(), r.rowRate())
		}
	}
	for _, r := range results {
		if r.FirstErr != "" {
			fmt.Fprintf(out, "first error in %s: %s\n", r.Phase.Name, r.FirstErr)
		}
	}
	mitm, gp, direct := byName["mitm-header"], byName["goproxy-header"], byName["direct"]
	if cfg.Rate > 0 && mitm != nil && gp != nil {
		fmt.Fprintf(out, "target: mitm-header req/s ≥ %.1f× goproxy-header: not measured in an open loop (every phase is offered %.0f req/s); run without -rate\n", targetRateVsGoproxy(cfg.Audit), cfg.Rate)
	} else if mitm != nil && gp != nil && gp.rate() > 0 {
		x := mitm.rate() / gp.rate()
		want := targetRateVsGoproxy(cfg.Audit)
		fmt.Fprintf(out, "target: mitm-header req/s = %.2f× goproxy-header with -audit %s (want ≥ %.1f×): %s\n", x, cfg.Audit, want, verdict(x >= want))
	}
	if pg := byName["mitm-header-pg"]; pg != nil && mitm != nil && mitm.rate() > 0 {
		x := pg.rate() / mitm.rate()
		fmt.Fprintf(out, "target: mitm-header-pg req/s = %.2f× mitm-header (bbolt) (want ≥ %.1f×): %s\n", x, targetPGVsBolt, verdict(x >= targetPGVsBolt))
	}
	if mitm != nil && direct != nil {
		added := mitm.P99 - direct.P99
		fmt.Fprintf(out, "target: mitm-header p99 added latency = %s (want < %s): %s\n", fmtDur(added), fmtDur(targetAddedP99), verdict(added < targetAddedP99))
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// fmtDur prints a latency in ms with two decimals (µs below 0.1 ms).
func fmtDur(d time.Duration) string {
	if d > -100*time.Microsecond && d < 100*time.Microsecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// loadAverage is the machine's 1, 5 and 15 minute load average at the end
// of the run: other work on the machine shows in every figure.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
