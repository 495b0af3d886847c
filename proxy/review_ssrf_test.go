package proxy

// Review finding: the own-listener check compares the dialed address with
// the listeners' addresses and loopback, but on Linux a connect to 0.0.0.0
// (INADDR_ANY) reaches the local host. Once 0.0.0.0/8 is opened (for example
// --allow-private-destinations 0.0.0.0/0 to "allow everything"), a sandbox
// reaches egressd's own listeners, which must never be a destination. The
// test asserts the current behaviour; invert it when fixed.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

func TestReviewOwnListenerReachableViaUnspecifiedAddress(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.AllowPrivate = append(c.AllowPrivate, netip.MustParsePrefix("0.0.0.0/8"))
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	_, port, _ := net.SplitHostPort(e.addr)

	// Control: the listener's own address is refused.
	if resp := rawConnect(t, e.addr, e.addr, basicAuth(sbx.ID, token)); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "own_listener" {
		t.Fatalf("control: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}

	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	target := net.JoinHostPort("0.0.0.0", port)
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basicAuth(sbx.ID, token))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %d %q: finding fixed, invert this test", target, resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	// Through the tunnel: egressd's own proxy listener answers.
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "not_a_proxy_request") {
		t.Fatalf("through the tunnel: %d %s", resp.StatusCode, body)
	}
}
