package main

import (
	"fmt"
	"strings"
	"time"
)

const (
	defaultDuration = 10 * time.Second
	defaultWarmup   = time.Second
	// requestTimeout bounds one request, so a phase ends at most this long
	// after its measured window.
	requestTimeout = 10 * time.Second
	// maxRequestsPerClient bounds each client's loop in count as well as time.
	maxRequestsPerClient = 10_000_000
)

// config is what the flags set.
type config struct {
	Clients    int
	Rate       float64 // requests a second, all clients together; 0: closed loop
	Duration   time.Duration
	Warmup     time.Duration
	Rounds     int
	Audit      string
	NoSync     bool
	Redact     bool
	ProxyLog   string
	BodySize   int
	CPUProfile string
	Phases     []string
	// Store is a PostgreSQL DSN: the phases marked PG serve egressd on a
	// fresh schema there, holding a copy of the benchmark's vault. Empty:
	// no such phase may run.
	Store string
}

func (c *config) check() error {
	switch {
	case c.Clients < 1 || c.Clients > 10_000:
		return fmt.Errorf("-c %d: want 1 to 10000 clients", c.Clients)
	case c.Rate < 0 || c.Rate > 1e6:
		return fmt.Errorf("-rate %g: want 0 (closed loop) to 1000000 requests a second", c.Rate)
	case c.Duration <= 0 || c.Duration > time.Hour:
		return fmt.Errorf("-d %s: want more than 0 and at most 1h", c.Duration)
	case c.Rounds < 1 || c.Rounds > 100:
		return fmt.Errorf("-rounds %d: want 1 to 100", c.Rounds)
	case c.Warmup < 0 || c.Warmup > 10*time.Minute:
		return fmt.Errorf("-warmup %s: want 0 to 10m", c.Warmup)
	case c.Audit != "sync" && c.Audit != "journal" && c.Audit != "async":
		return fmt.Errorf("-audit %q: want sync, journal or async", c.Audit)
	case c.ProxyLog != "json" && c.ProxyLog != "none":
		return fmt.Errorf("-proxy-log %q: want json or none", c.ProxyLog)
	case c.BodySize < 1024 || c.BodySize > 64<<20:
		return fmt.Errorf("-body %d: want 1024 to 64 MiB", c.BodySize)
	}
	for _, name := range c.Phases {
		ph, ok := phaseByName(name)
		if !ok {
			return fmt.Errorf("-phases: unknown phase %q (known: %s)", name, strings.Join(phaseNames(), ", "))
		}
		if ph.PG && c.Store == "" {
			return fmt.Errorf("-phases: %s serves egressd on PostgreSQL: give -store DSN", name)
		}
	}
	return nil
}

// Proxies under test, each run in its own child process.
const (
	proxyNone    = ""
	proxyEgressd = "egressd"
	proxyGoproxy = "goproxy"
)

// Host names of the upstream. Every one resolves to 127.0.0.1; the upstream
// checks that what reached it carries the real value where one is due.
const (
	hostAPI    = "api.bench.test"    // header secret allowed here
	hostBody   = "body.bench.test"   // body secret allowed here
	hostTunnel = "tunnel.bench.test" // no secret: egressd tunnels
)

// phase is one row of the table.
type phase struct {
	Name  string
	What  string
	Proxy string
	Host  string
	Body  bool
	// Baseline is the phase the ratios compare with: the direct phase
	// sending the same request.
	Baseline string
	// PG: egressd keeps its vault in PostgreSQL (-store), not in the
	// bbolt file.
	PG bool
}

var allPhases = []phase{
	{"direct", "client -> upstream, GET with Authorization", proxyNone, hostAPI, false, "direct", false},
	{"direct-body", "client -> upstream, POST of a JSON body", proxyNone, hostBody, true, "direct-body", false},
	{"tunnel", "egressd CONNECT tunnel (no secret for the host)", proxyEgressd, hostTunnel, false, "direct", false},
	{"mitm-header", "egressd MITM, Authorization: Bearer <placeholder>", proxyEgressd, hostAPI, false, "direct", false},
	{"mitm-header-pg", "mitm-header with the vault in PostgreSQL (-store)", proxyEgressd, hostAPI, false, "direct", true},
	{"mitm-body", "egressd MITM, placeholder in the JSON body", proxyEgressd, hostBody, true, "direct-body", false},
	{"goproxy-header", "bare goproxy MITM, header swap only (tuned)", proxyGoproxy, hostAPI, false, "direct", false},
}

// phaseNames lists every phase.
func phaseNames() []string {
	var n []string
	for _, p := range allPhases {
		n = append(n, p.Name)
	}
	return n
}

// defaultPhases is every phase that can run: the PostgreSQL ones only
// with a store.
func defaultPhases(store string) []string {
	var n []string
	for _, p := range allPhases {
		if !p.PG || store != "" {
			n = append(n, p.Name)
		}
	}
	return n
}

func phaseByName(name string) (phase, bool) {
	for _, p := range allPhases {
		if p.Name == name {
			return p, true
		}
	}
	return phase{}, false
}
