package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	serveconfig "github.com/egressd/egressd/internal/config"
)

// childEnv carries a childSpec (JSON) to a re-exec of this binary. An
// environment variable rather than a flag, so that the test binary can be
// re-executed the same way (TestMain checks it).
const childEnv = "EGRESS_BENCH_CHILD"

// childSpec tells a child which proxy to serve.
type childSpec struct {
	Proxy      string `json:"proxy"` // proxyEgressd or proxyGoproxy
	Dir        string `json:"dir"`
	Audit      string `json:"audit"`
	NoSync     bool   `json:"nosync"`
	Redact     bool   `json:"redact"`
	ProxyLog   string `json:"proxy_log"`
	CPUProfile string `json:"cpuprofile"` // "" for none
	// PGDSN and PGSchema: egressd's vault is in PostgreSQL (a PG phase).
	PGDSN    string `json:"pg_dsn,omitempty"`
	PGSchema string `json:"pg_schema,omitempty"`
}

func childSpecFromEnv() (childSpec, bool) {
	v := os.Getenv(childEnv)
	if v == "" {
		return childSpec{}, false
	}
	var s childSpec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		fmt.Fprintf(os.Stderr, "egress-bench child: bad %s: %v\n", childEnv, err)
		os.Exit(2)
	}
	return s, true
}

// served is a proxy running in the child.
type served interface {
	stop(ctx context.Context)
}

// procStats is the child's own resource use, as it reports it.
type procStats struct {
	CPU    time.Duration `json:"cpu_ns"` // user + system
	User   time.Duration `json:"user_ns"`
	System time.Duration `json:"sys_ns"`
	HWMKiB int64         `json:"hwm_kib"` // peak RSS so far (VmHWM)
	RSSKiB int64         `json:"rss_kib"` // RSS now (VmRSS)
}

// runChild serves one proxy on 127.0.0.1 and speaks a line protocol with
// the parent: it writes "ready ADDR", then answers each "begin" and "end"
// on stdin with "stats JSON" ("begin" starts the CPU profile, "end" stops
// it). It stops when stdin closes, so it never outlives the parent.
func runChild(spec childSpec) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "egress-bench child (%s): %v\n", spec.Proxy, err)
		return 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	var s served
	switch spec.Proxy {
	case proxyEgressd:
		// The collector's setting serve runs with (GOGC=200 unless the
		// environment sets GOGC); goproxy's child keeps Go's default.
		serveconfig.TuneGC(os.Getenv)
		s, err = serveEgressd(spec, l)
	case proxyGoproxy:
		s, err = serveGoproxy(spec, l)
	default:
		err = fmt.Errorf("unknown proxy %q", spec.Proxy)
	}
	if err != nil {
		l.Close()
		return fail(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.stop(ctx)
	}()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready %s\n", l.Addr())
	out.Flush()
	var prof *os.File
	defer func() {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch strings.TrimSpace(in.Text()) {
		case "begin":
			if spec.CPUProfile != "" && prof == nil {
				if prof, err = os.Create(spec.CPUProfile); err != nil {
					return fail(err)
				}
				if err := pprof.StartCPUProfile(prof); err != nil {
					return fail(err)
				}
			}
		case "end":
			if prof != nil {
				pprof.StopCPUProfile()
				if err := prof.Close(); err != nil {
					return fail(err)
				}
				prof = nil
			}
		default:
			return fail(fmt.Errorf("unknown command %q", in.Text()))
		}
		b, _ := json.Marshal(selfStats())
		fmt.Fprintf(out, "stats %s\n", b)
		out.Flush()
	}
	return 0
}

// benchLookup resolves the benchmark's names, and only them, to 127.0.0.1.
type benchLookup struct{}

func (benchLookup) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".bench.test") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	return nil, &net.DNSError{Err: "not a benchmark host", Name: host, IsNotFound: true}
}

// loopbackDial dials 127.0.0.1 at addr's port, whatever its host: the
// benchmark's names exist only here.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "127.0.0.1" && !strings.HasSuffix(host, ".bench.test") {
		return nil, fmt.Errorf("egress-bench: refusing to dial %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

// serveHTTP serves h on l until stop.
type httpServed struct {
	srv  *http.Server
	done chan struct{}
	also []func()
}

func (h *httpServed) stop(ctx context.Context) {
	h.srv.Shutdown(ctx)
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	for _, f := range h.also {
		f()
	}
}

func caPEMPath(dir, sub string) string { return filepath.Join(dir, sub, "ca.pem") }
