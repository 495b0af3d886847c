package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/internal/golden"
)

const replayUsage = `Usage:
  egressd replay DIR --admin-url URL (--api-key KEY | --operator-key KEY) [flags]

Replays the golden cases DIR/*.txtar (the format of testdata/golden, see
README "Golden-request suite") against a RUNNING egressd: for each case it
creates the sandboxes, secrets (rotations, disabled), bindings and tenant
settings through the admin API, sends the request through the proxy with the
sandbox's proxy credentials to a recording upstream it starts on 127.0.0.1,
compares what the upstream got, the answer and the newest audit row of the
sandbox, then deletes what it created. One line per case:
  ok NAME | FAIL NAME (error) and a diff per field | skip NAME (reason)
and exit 1 if any failed.

--api-key is a tenant admin key: use a tenant kept for replays (a case's
secret that the tenant already holds fails the case rather than being
overwritten). --operator-key creates a throwaway tenant "replay-<random>".

The upstream has its own CA and the cases name hosts *.test, so start the
server so that it trusts that CA and may dial loopback:
  egressd replay --upstream-ca-dir CADIR    # only creates CADIR/ca.pem (if missing) and prints its path
  egressd serve --upstream-ca CADIR/ca.pem --allow-private-destinations 127.0.0.1/32 ...
  egressd replay DIR --upstream-ca-dir CADIR ...
(or --upstream-ca-out FILE writes the CA's PEM before the cases run). The
server resolves names with the system resolver: give --host-rewrite
localhost to replace every *.test name of a case by localhost (cases that
need two different names are then skipped), or make *.test resolve to
127.0.0.1 yourself. Cases that need a fake DNS answer for a private address
(private.test, metadata.test) are skipped.

Flags:
`

func runReplay(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage)
		fs.PrintDefaults()
	}
	var cfg golden.ExternalConfig
	fs.StringVar(&cfg.AdminURL, "admin-url", "http://127.0.0.1:8081", "admin API of the running egressd")
	fs.StringVar(&cfg.APIKey, "api-key", "", "tenant admin API key (a tenant kept for replays)")
	fs.StringVar(&cfg.OperatorKey, "operator-key", "", "operator key: replay into a new tenant replay-<random> instead")
	fs.StringVar(&cfg.ProxyURL, "proxy-url", "", "the proxy's address (default: proxy_url of the sandbox creation answer)")
	fs.StringVar(&cfg.HostRewrite, "host-rewrite", "", "replace every *.test name of a case by this name (say localhost)")
	fs.StringVar(&cfg.UpstreamCADir, "upstream-ca-dir", "", "directory of the recording upstream's CA, created if missing (default: a temporary one)")
	caOut := fs.String("upstream-ca-out", "", "write the upstream CA's PEM to this file before the cases run")
	fs.DurationVar(&cfg.AuditWait, "audit-wait", 5*time.Second, "how long to poll the audit log for a request's row")
	dir := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dir, args = args[0], args[1:]
	}
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	if dir == "" && cfg.UpstreamCADir != "" {
		// Only make the CA, for serve --upstream-ca, and say where it is.
		if _, _, err := certs.LoadOrCreateCA(cfg.UpstreamCADir); err != nil {
			return fail(stderr, "replay", err)
		}
		fmt.Fprintln(stdout, filepath.Join(cfg.UpstreamCADir, certs.CACertFile))
		return 0
	}
	if dir == "" {
		fmt.Fprintln(stderr, "egressd replay: no DIR (it comes first: egressd replay DIR --admin-url ...)")
		fs.Usage()
		return 2
	}
	if (cfg.APIKey == "") == (cfg.OperatorKey == "") {
		fmt.Fprintln(stderr, "egressd replay: give one of --api-key and --operator-key")
		return 2
	}
	cases, err := golden.LoadDir(dir)
	if err != nil {
		return fail(stderr, "replay", err)
	}
	if len(cases) == 0 {
		return fail(stderr, "replay", fmt.Errorf("no *.txtar cases in %s", dir))
	}
	if cfg.UpstreamCADir == "" {
		tmp, err := os.MkdirTemp("", "egressd-replay-ca-")
		if err != nil {
			return fail(stderr, "replay", err)
		}
		defer os.RemoveAll(tmp)
		cfg.UpstreamCADir = tmp
	}
	x, err := golden.NewExternal(context.Background(), cfg)
	if err != nil {
		return fail(stderr, "replay", err)
	}
	defer x.Close()
	if *caOut != "" {
		if err := os.WriteFile(*caOut, x.UpstreamCA(), 0o644); err != nil {
			return fail(stderr, "replay", err)
		}
	}
	if x.Tenant != "" {
		fmt.Fprintf(stderr, "egressd replay: tenant %s\n", x.Tenant)
	}
	var ok, skipped, failed int
	for _, c := range cases {
		diffs, notes, err := x.Check(c)
		var skip *golden.Skip
		switch {
		case errors.As(err, &skip):
			skipped++
			fmt.Fprintf(stdout, "skip %s (%s)\n", c.Name, skip.Reason)
		case err != nil:
			failed++
			fmt.Fprintf(stdout, "FAIL %s (%v)\n", c.Name, err)
		case len(diffs) > 0:
			failed++
			fmt.Fprintf(stdout, "FAIL %s\n", c.Name)
			for _, d := range diffs {
				fmt.Fprintf(stdout, "    %s\n", d)
			}
		default:
			ok++
			if len(notes) > 0 {
				fmt.Fprintf(stdout, "ok %s (%s)\n", c.Name, strings.Join(notes, "; "))
			} else {
				fmt.Fprintf(stdout, "ok %s\n", c.Name)
			}
		}
	}
	fmt.Fprintf(stderr, "egressd replay: %d ok, %d skipped, %d failed\n", ok, skipped, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
