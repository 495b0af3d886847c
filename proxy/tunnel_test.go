package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// openTunnel sends CONNECT target as the sandbox and returns the
// connection once egressd answered 200.
func openTunnel(t *testing.T, e *env, target, auth string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
	// One byte at a time: nothing after the CONNECT's answer is taken.
	resp, err := http.ReadResponse(bufio.NewReaderSize(oneByteReader{conn}, 16), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %d %s", target, resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	return conn
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(b []byte) (int, error) { return o.r.Read(b[:1]) }

func (e *env) setHostRules(t *testing.T, allow, deny []string) {
	t.Helper()
	if allow == nil {
		allow = []string{}
	}
	if deny == nil {
		deny = []string{}
	}
	if _, err := e.store.UpdateSettings(e.tenant, vault.SettingsPatch{EgressAllowHosts: &allow, EgressDenyHosts: &deny}); err != nil {
		t.Fatal(err)
	}
}

// noEvent fails if an audit event is waiting.
func (e *env) noEvent(t *testing.T) {
	t.Helper()
	select {
	case ev := <-e.events:
		t.Fatalf("unexpected event: %s %s %s", ev.Outcome, ev.Reason, ev.Host)
	default:
	}
}

// Regression (issue 13, 8a): with egress_allow_hosts [other.test], a
// CONNECT other.test whose TLS ClientHello named evil.test reached
// evil.test (domain fronting through a pass-through tunnel).
func TestTunnelServerNameMustBeConnectHost(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	auth := basicAuth(sbx.ID, token)
	cases := []struct {
		name        string
		allow, deny []string
		connect     string // CONNECT host
		sni         string // "": none sent
		reason      string // "": passes
	}{
		{"fronted past the allow list", []string{"other.test"}, nil, "other.test", "evil.test", "sni_mismatch"},
		{"fronted past the deny list", nil, []string{"evil.test"}, "other.test", "evil.test", "sni_mismatch"},
		{"the CONNECT host", []string{"other.test"}, nil, "other.test", "other.test", ""},
		{"case and trailing dot do not matter", []string{"other.test"}, nil, "Other.Test.", "OTHER.test", ""},
		{"no server name for a host", []string{"other.test"}, nil, "other.test", "", "sni_mismatch"},
		{"no server name for an address", []string{"127.0.0.1"}, nil, "127.0.0.1", "", ""},
		{"a host name for an address", []string{"127.0.0.1"}, nil, "127.0.0.1", "evil.test", "sni_mismatch"},
		{"no host rules: not checked", nil, nil, "other.test", "evil.test", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.setHostRules(t, c.allow, c.deny)
			before := e.up.count()
			conn := openTunnel(t, e, net.JoinHostPort(c.connect, e.up.port), auth)
			tc := tls.Client(conn, &tls.Config{ServerName: c.sni, InsecureSkipVerify: true})
			err := tc.Handshake()
			if c.reason != "" {
				if err == nil || !strings.Contains(err.Error(), "access denied") {
					t.Fatalf("handshake: %v, want the proxy's access_denied alert", err)
				}
				if n := e.up.count(); n != before {
					t.Fatalf("the upstream got %d requests", n-before)
				}
				ev := e.event(t)
				if ev.Outcome != OutcomeDenied || ev.Reason != c.reason || ev.Host != strings.ToLower(strings.TrimSuffix(c.connect, ".")) || ev.Method != http.MethodConnect || ev.SandboxID != sbx.ID {
					t.Fatalf("event %s %s %s %s %s", ev.Outcome, ev.Reason, ev.Host, ev.Method, ev.SandboxID)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			host := c.sni
			if host == "" {
				host = c.connect
			}
			fmt.Fprintf(tc, "GET /through HTTP/1.1\r\nHost: %s\r\n\r\n", host)
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("through the tunnel: %v %v", resp, err)
			}
			if got := e.up.last(t); got.URI != "/through" {
				t.Fatalf("upstream got %s", got.URI)
			}
			e.noEvent(t)
		})
	}
}

// Under host rules a tunnel carries TLS only: plain HTTP could name any
// host to a server that routes by Host.
func TestTunnelNotTLSUnderHostRules(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.setHostRules(t, []string{"other.test"}, nil)
	conn := openTunnel(t, e, net.JoinHostPort("other.test", e.up.port), basicAuth(sbx.ID, token))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	// Closed with the request unread: EOF or a reset.
	if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d, %v: want the tunnel closed", n, err)
	}
	if n := e.up.count(); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	if ev := e.event(t); ev.Reason != "tunnel_not_tls" || ev.Outcome != OutcomeDenied {
		t.Fatalf("event %s %s", ev.Outcome, ev.Reason)
	}
}

// Regression (issue 13, 9): a CONNECT that never started TLS was held
// for the idle timeout (5 minutes), pass-through or MITM'd; it is closed
// after HandshakeTimeout.
func TestTunnelHandshakeTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond })
	sbx, token := e.sandbox(vault.SandboxInput{})
	auth := basicAuth(sbx.ID, token)
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant, AllowedHosts: []string{"mitm.test"}})
	cases := []struct {
		name, host string
		rules      bool
		send       []byte
	}{
		{"pass-through, nothing sent", "other.test", false, nil},
		{"pass-through under host rules, nothing sent", "other.test", true, nil},
		{"pass-through under host rules, part of a hello", "other.test", true, []byte{0x16, 3, 1, 0, 200, 1}},
		{"MITM, nothing sent", "mitm.test", false, nil},
		{"MITM, part of a hello", "mitm.test", false, []byte{0x16, 3, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.rules {
				e.setHostRules(t, []string{"other.test", "mitm.test"}, nil)
			} else {
				e.setHostRules(t, nil, nil)
			}
			conn := openTunnel(t, e, net.JoinHostPort(c.host, e.up.port), auth)
			conn.Write(c.send)
			// The 5 s deadline is the test's bound; the proxy must close first.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Fatalf("read %d, %v: want the tunnel closed by the handshake timeout", n, err)
			}
		})
	}
}

// The server name is compared without case and trailing dot; an address
// CONNECT takes no name or the same address.
func TestHelloReason(t *testing.T) {
	cases := []struct {
		host, sni string
		ech       bool
		want      Reason
	}{
		{"other.test", "other.test", false, ReasonNone},
		{"other.test", "Other.TEST.", false, ReasonNone},
		{"other.test", "other.test..", false, ReasonSNIMismatch},
		{"other.test", "evil.test", false, ReasonSNIMismatch},
		{"other.test", "sub.other.test", false, ReasonSNIMismatch},
		{"other.test", "", false, ReasonSNIMismatch},
		{"other.test", "other.test", true, ReasonSNIMismatch},
		{"203.0.113.5", "", false, ReasonNone},
		{"203.0.113.5", "203.0.113.5", false, ReasonNone},
		{"2001:db8::1", "2001:DB8:0::1", false, ReasonNone},
		{"203.0.113.5", "203.0.113.6", false, ReasonSNIMismatch},
		{"203.0.113.5", "evil.test", false, ReasonSNIMismatch},
	}
	for _, c := range cases {
		pt := &passTunnel{sess: &session{host: c.host}}
		if got, why := pt.helloReason(&clientHello{serverName: c.sni, ech: c.ech}, nil); got != c.want {
			t.Errorf("CONNECT %s, SNI %q (ech %v): %v (%s), want %v", c.host, c.sni, c.ech, got, why, c.want)
		}
	}
}
