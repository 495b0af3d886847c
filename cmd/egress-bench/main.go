// Command egress-bench is egressd's load benchmark. It starts an HTTPS
// upstream on loopback, runs each proxy under test in a child process (a
// re-exec of this binary) so that the CPU time and peak RSS it reports are
// the proxy's own, drives concurrent keep-alive clients through every
// phase, and prints one table. Everything listens on 127.0.0.1 and every
// phase stops by itself.
//
//	go run ./cmd/egress-bench [-c 50] [-d 10s] [-audit journal|sync|async] [-cpuprofile cpu.prof]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if spec, ok := childSpecFromEnv(); ok {
		os.Exit(runChild(spec))
	}
	var cfg config
	var sizeCfg sizeConfig
	flag.IntVar(&cfg.Clients, "c", 50, "concurrent keep-alive clients (one connection each)")
	flag.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests a second, all clients together, each client on its own schedule, latency counted from when a request was due (0: closed loop, every client as fast as it is answered)")
	flag.DurationVar(&cfg.Duration, "d", defaultDuration, "measured duration of each phase")
	flag.IntVar(&cfg.Rounds, "rounds", 1, "run every phase this many times, interleaved, and report each figure's median (steadier on a shared machine)")
	flag.DurationVar(&cfg.Warmup, "warmup", defaultWarmup, "load before each phase's measurement starts (connections, TLS, caches)")
	flag.StringVar(&cfg.Audit, "audit", "journal", "egressd audit mode: journal (serve's default: a row is written to the audit journal, unsynced, before the value leaves), sync (committed, with fdatasync, before the value leaves) or async")
	flag.BoolVar(&cfg.NoSync, "nosync", false, "open the vault without fsync (not a production setting)")
	flag.BoolVar(&cfg.Redact, "redact", true, "egressd masks echoed values in responses (serve's --redact-responses default)")
	flag.StringVar(&cfg.ProxyLog, "proxy-log", "json", "egressd decision lines: json (encoded, then discarded) or none")
	flag.IntVar(&cfg.BodySize, "body", 64<<10, "request body size of the body phases, in bytes")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write each proxy child's CPU profile of its measured window to FILE with the phase name inserted (cpu.prof -> cpu.mitm-header.prof)")
	flag.StringVar(&cfg.Store, "store", "", "PostgreSQL DSN (URL or key=value, as serve's --store): adds the phase mitm-header-pg, egressd with its vault on a fresh schema there (dropped at the end) holding a copy of the benchmark's vault")
	phases := flag.String("phases", "", "comma-separated phases to run (default: every phase; mitm-header-pg only with -store)")
	size := flag.String("size", "", "instead of the load phases: generate the one-node-at-size data set in the data dir DIR (created; must not hold a vault) and measure egressd serve on it (see -size-*)")
	flag.IntVar(&sizeCfg.Tenants, "size-tenants", defaultSize.Tenants, "-size: tenants")
	flag.IntVar(&sizeCfg.Sandboxes, "size-sandboxes", defaultSize.Sandboxes, "-size: sandboxes, spread over the tenants")
	flag.IntVar(&sizeCfg.Secrets, "size-secrets", defaultSize.Secrets, "-size: secrets, spread over the tenants")
	flag.IntVar(&sizeCfg.AuditRows, "size-audit", defaultSize.AuditRows, "-size: audit rows, spread over the tenants")
	flag.StringVar(&sizeCfg.Egressd, "size-egressd", "", "-size: the egressd binary to start (default: built from this module with go build)")
	flag.IntVar(&sizeCfg.Calls, "size-calls", defaultSize.Calls, "-size: how many times each admin API call is timed")
	flag.BoolVar(&sizeCfg.Keep, "size-keep", false, "-size: keep DIR afterwards (default: removed at the end when this run created it)")
	flag.Parse()
	cfg.Phases = defaultPhases(cfg.Store)
	if *phases != "" {
		cfg.Phases = strings.Split(*phases, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *size != "" {
		sizeCfg.Dir = *size
		if err := runSize(ctx, sizeCfg, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "egress-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "egress-bench:", err)
		os.Exit(1)
	}
}
