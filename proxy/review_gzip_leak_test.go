package proxy

// Regression test from the security review: the gzip streaming goroutine
// (body.go, gzipBody) writes into an io.Pipe whose reader nobody closed when
// the upstream round trip failed or the upstream stopped reading:
// httputil.ReverseProxy wraps the outbound body in a reader whose Close does
// nothing, and the transport's closeBody hit that wrapper. The goroutine,
// its gzip.Writer (flate state, ~1 MB) and gzip.Reader stayed blocked in
// pw.Write for good. A 40 KiB request (zeros that inflate past the 32 MiB
// buffered limit) to a closed port of an allowed host was enough. Now the
// pipe is closed when the request ends, and the goroutines must be gone.

import (
	"bytes"
	"compress/gzip"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

func TestReviewGzipPipeGoroutineEndsOnUpstreamFailure(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant,
		SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, dead, _ := net.SplitHostPort(l.Addr().String())
	l.Close()

	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(make([]byte, 40<<20)) // inflates past MaxBufferedBody*32: streamed
	zw.Close()
	leaked := func() int {
		buf := make([]byte, 4<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "proxy.(*Proxy).gzipBody.func")
	}
	before := leaked()
	const n = 3
	c := e.client(sbx.ID, token)
	for range n {
		resp, body := do(t, c, "POST", "https://api.test:"+dead+"/v1", bytes.NewReader(z.Bytes()), map[string]string{"Content-Encoding": "gzip"})
		if resp.StatusCode != 502 {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
	}
	// The goroutines end once the requests are over; wait for that, up to a
	// deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := leaked() - before
		if left <= 0 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 4<<20)
			t.Fatalf("%d gzip goroutines left after %d failed requests:\n%s", left, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
