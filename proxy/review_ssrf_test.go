package proxy

// Regression test from the security review: the own-listener check compared
// the dialed address with the listeners' addresses and loopback, but on
// Linux a connect to 0.0.0.0 (INADDR_ANY) reaches the local host. Once
// 0.0.0.0/8 was opened (for example --allow-private-destinations 0.0.0.0/0
// to "allow everything"), a sandbox reached egressd's own listeners, which
// must never be a destination. The unspecified address is now refused as a
// private address whatever AllowPrivate opens.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

func TestReviewUnspecifiedAddressRefused(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.AllowPrivate = append(c.AllowPrivate, netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("::/128"))
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	_, port, _ := net.SplitHostPort(e.addr)

	// Control: the listener's own address is refused.
	if resp := rawConnect(t, e.addr, e.addr, basicAuth(sbx.ID, token)); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "own_listener" {
		t.Fatalf("control: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}

	for _, host := range []string{"0.0.0.0", "::"} {
		t.Run(host, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			target := net.JoinHostPort(host, port)
			fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basicAuth(sbx.ID, token))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "private_address" {
				t.Fatalf("CONNECT %s: %d %q, want 403 private_address", target, resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
			}
		})
	}
}
