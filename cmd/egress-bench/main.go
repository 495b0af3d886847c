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
	phases := flag.String("phases", strings.Join(phaseNames(), ","), "comma-separated phases to run")
	flag.Parse()
	cfg.Phases = strings.Split(*phases, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "egress-bench:", err)
		os.Exit(1)
	}
}
