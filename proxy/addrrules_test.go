package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/egressd/egressd/vault"
)

// switchLookup answers each name with the address set for it now (loopback
// if none), so a test can change DNS between a CONNECT and its requests.
type switchLookup struct {
	mu sync.Mutex
	m  map[string]netip.Addr
}

func (s *switchLookup) set(host, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[host] = netip.MustParseAddr(addr)
}

func (s *switchLookup) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.m[host]; ok {
		return []netip.Addr{a}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// otherTenant makes a second tenant with a sandbox; it returns the
// sandbox's proxy credentials.
func (e *env) otherTenant(t *testing.T, name string, rules vault.SettingsPatch) (tenantID, auth string) {
	t.Helper()
	tn, _, err := e.store.EnsureTenant(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateSettings(tn.ID, rules); err != nil {
		t.Fatal(err)
	}
	sbx, token, err := e.store.CreateSandbox(tn.ID, vault.SandboxInput{})
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID, basicAuth(sbx.ID, token)
}

// Regression (issue 13, 8b): egress_deny_hosts matched names only, so an
// IP literal or another name of a denied server passed. A CIDR rule is
// matched against the address dialed, whatever the sandbox called it.
func TestDenyRangeStopsEveryNameOfTheServer(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	auth := basicAuth(sbx.ID, token)
	// The server's address alone (which older versions took, and matched
	// as a name only), or as a range.
	for _, server := range []string{"127.0.0.1", "127.0.0.1/32"} {
		e.setHostRules(t, nil, []string{"evil.test", server})
		for _, host := range []string{"evil.test", "alias-of-evil.test", "127.0.0.1", "::ffff:127.0.0.1"} {
			t.Run(server+" "+host, func(t *testing.T) {
				resp := rawConnect(t, e.addr, net.JoinHostPort(host, e.up.port), auth)
				if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_denied" {
					t.Fatalf("CONNECT %s: %d %q, want 403 host_denied", host, resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
				}
				if ev := e.event(t); ev.Reason != "host_denied" {
					t.Fatalf("event reason %q", ev.Reason)
				}
			})
		}
		// A plain proxy request dials by name: the dialer refuses it.
		t.Run(server+" plain http", func(t *testing.T) {
			resp, _ := do(t, e.client(sbx.ID, token), http.MethodGet, e.url("http", "alias-of-evil.test", "/"), nil, nil)
			if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_denied" {
				t.Fatalf("GET http://alias-of-evil.test: %d %q, want 403 host_denied", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
			}
		})
	}
	// Control: a tenant without the rule reaches the same server.
	_, other := e.otherTenant(t, "globex", vault.SettingsPatch{})
	if resp := rawConnect(t, e.addr, net.JoinHostPort("alias-of-evil.test", e.up.port), other); resp.StatusCode != 200 {
		t.Fatalf("control: %d", resp.StatusCode)
	}
}

// An allowed range lets a host that no name rule names through to the
// addresses in it, and no further.
func TestAllowRangeDecidesByAddress(t *testing.T) {
	lk := &switchLookup{m: map[string]netip.Addr{}}
	e := newEnv(t, func(c *Config) { c.Lookup = lk })
	sbx, token := e.sandbox(vault.SandboxInput{})
	auth := basicAuth(sbx.ID, token)
	e.setHostRules(t, []string{"named.test", "127.0.0.0/30"}, nil)
	lk.set("far.test", "127.0.0.9")
	cases := map[string]int{"named.test": 200, "anything.test": 200, "127.0.0.1": 200, "far.test": 403, "127.0.0.9": 403}
	for host, want := range cases {
		resp := rawConnect(t, e.addr, net.JoinHostPort(host, e.up.port), auth)
		if resp.StatusCode != want {
			t.Errorf("CONNECT %s: %d %q, want %d", host, resp.StatusCode, resp.Header.Get("X-Egress-Denied"), want)
		}
	}
}

// The rule holds at the dial, not only at the CONNECT's look-up: a name
// whose DNS answer changes once the CONNECT was allowed is refused at
// the request's own dial, and a tenant with address rules never reuses a
// connection another tenant's request dialed.
func TestDenyRangeAtTheDial(t *testing.T) {
	lk := &switchLookup{m: map[string]netip.Addr{}}
	e := newEnv(t, func(c *Config) { c.Lookup = lk; c.MITMAll = true })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.setHostRules(t, nil, []string{"127.0.0.1/32"})
	_, otherAuth := e.otherTenant(t, "globex", vault.SettingsPatch{})
	get := func(t *testing.T, auth string) *http.Response {
		t.Helper()
		id, tok := credentials(t, auth)
		lk.set("flip.test", "127.0.0.2") // what the CONNECT sees
		tn := e.rawTunnel(t, id, tok, "flip.test")
		lk.set("flip.test", "127.0.0.1") // what a dial sees
		tn.send("GET /flip HTTP/1.1\r\nHost: api.test\r\n\r\n")
		resp, _ := tn.read(http.MethodGet)
		return resp
	}
	refused := func(t *testing.T) {
		t.Helper()
		before := e.up.count()
		resp := get(t, basicAuth(sbx.ID, token))
		if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_denied" {
			t.Fatalf("%d %q, want 403 host_denied", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
		}
		if n := e.up.count() - before; n != 0 {
			t.Fatalf("the upstream got %d requests", n)
		}
	}
	t.Run("new connection", refused)
	// Another tenant's request leaves a pooled connection to 127.0.0.1.
	if resp := get(t, otherAuth); resp.StatusCode != 200 {
		t.Fatalf("other tenant: %d", resp.StatusCode)
	}
	t.Run("pooled connection of another tenant", refused)
}

// credentials splits a basicAuth value back into id and token.
func credentials(t *testing.T, auth string) (string, string) {
	t.Helper()
	r := &http.Request{Header: http.Header{"Proxy-Authorization": {auth}}}
	id, token, ok := sandboxCredentials(r.Header)
	if !ok {
		t.Fatal(fmt.Sprintf("bad credentials %q", auth))
	}
	return id, token
}
