package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck asks a running egressd whether it serves: exit 0 when
// /healthz answers 200. For container HEALTHCHECKs (the image has no curl).
func runHealthcheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:8081/healthz", "health URL of the admin listener")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fail(stderr, "healthcheck", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(stderr, "healthcheck", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(stderr, "healthcheck", fmt.Errorf("%s answered %s", *url, resp.Status))
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
