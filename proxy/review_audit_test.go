package proxy

// Regression test from the security review: a streamed request body is
// still being read, decided and substituted by the transport after the
// response headers arrive (ModifyResponse). An upstream that answers before
// it has read the body (full duplex, or simply early) gets real values
// after the response has begun. The final audit record is now written once
// the handler returns (finalize), so it lists those late uses, in sync and
// in async audit mode; and the response redactor reads the request's echoes
// live, so the late value's echo reaches the sandbox as the placeholder.

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

func TestReviewLateBodySubstitutionAuditedAndRedacted(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync audit", true: "async audit"}[async], func(t *testing.T) { lateBody(t, async) })
	}
}

func lateBody(t *testing.T, async bool) {
	leafs, roots := upstreamCA(t)
	got := make(chan string, 1)
	// A full-duplex upstream: headers first, then it reads the body and
	// echoes it back.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		rc.Flush()
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		w.Write(b)
	}))
	srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return leafs.Get(h.ServerName) }}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	e := newEnv(t, func(c *Config) { c.UpstreamRoots = roots; c.MaxBufferedBody = 1 << 10; c.AuditAsync = async })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"},
		SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}})
	ph := e.placeholder(sbx, "k")

	pr, pw := io.Pipe()
	xs := strings.Repeat("x", 4<<10)
	go func() {
		pw.Write([]byte(xs))               // over MaxBufferedBody: streamed
		time.Sleep(300 * time.Millisecond) // the response headers are back by now
		pw.Write([]byte(" " + ph))
		pw.Close()
	}()
	// Connection: close keeps the tunnel's http.Server from draining the
	// unread request body itself when the early response headers are
	// written; without it the bytes would race between that drain and the
	// forwarder (the tunnel now enables full duplex, but the reproduction is
	// kept as the review wrote it).
	resp, body := do(t, e.client(sbx.ID, token), "POST", "https://api.test:"+port+"/v1/stream", pr, map[string]string{"Connection": "close"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case up := <-got:
		if up != xs+" "+realValue {
			t.Fatalf("upstream got ...%q: not substituted", up[max(0, len(up)-40):])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream never finished reading the body")
	}
	// The echo of the late value is masked.
	if strings.Contains(string(body), realValue) {
		t.Fatalf("sandbox got the value: ...%q", body[max(0, len(body)-40):])
	}
	if string(body) != xs+" "+ph {
		t.Fatalf("sandbox got ...%q, want the placeholder in place of the echo", body[max(0, len(body)-40):])
	}
	// The final record is written when the handler returns, after the body
	// was substituted: it lists the late use. In sync mode the pre-forward
	// record came first; in async mode there is none.
	pre := 0
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e.events:
			if !ev.Final {
				pre++
				continue
			}
			if want := map[bool]int{false: 1, true: 0}[async]; pre != want {
				t.Fatalf("%d pre-forward records, want %d", pre, want)
			}
			if ev.Status != 200 || ev.Outcome != OutcomeSubstituted {
				t.Fatalf("final event status %d outcome %q", ev.Status, ev.Outcome)
			}
			n := 0
			for _, u := range ev.Uses {
				if u.Name == "k" && u.Location == vault.InBody && u.Action == ActionSubstituted {
					n++
				}
			}
			if n != 1 || len(ev.Uses) != 1 {
				t.Fatalf("final event uses %+v, want the one late body substitution", ev.Uses)
			}
			if b, _ := json.Marshal(ev); strings.Contains(string(b), realValue) {
				t.Fatalf("final event holds the value: %s", b)
			}
			select {
			case extra := <-e.events:
				t.Fatalf("another event after the final one: %+v", extra)
			default:
			}
			return
		case <-deadline:
			t.Fatalf("no final event (%d pre-forward records)", pre)
		}
	}
}
