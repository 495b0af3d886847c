package proxy

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/egressd/egressd/internal/config"
)

// readDeclared takes a body of exactly its declared length, read to its
// end (so the transport can keep the connection), and nothing else.
func TestReadDeclared(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    io.Reader
		n    int64
		ok   bool
	}{
		{"exact", strings.NewReader("hello"), 5, true},
		{"exact, a byte a read", iotest.OneByteReader(strings.NewReader("hello")), 5, true},
		{"exact, data with EOF", iotest.DataErrReader(strings.NewReader("hello")), 5, true},
		{"empty", strings.NewReader(""), 0, true},
		{"cut short", strings.NewReader("hell"), 5, false},
		{"longer than declared", strings.NewReader("hello!"), 5, false},
		{"fails", iotest.TimeoutReader(strings.NewReader("hello")), 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &eofSeen{r: tc.r}
			b, ok := readDeclared(r, tc.n)
			if ok != tc.ok || ok && string(b) != "hello"[:tc.n] {
				t.Fatalf("got %q %v, want ok %v", b, ok, tc.ok)
			}
			if ok && !r.eof {
				t.Fatal("not read to its end: the transport would drop the connection")
			}
		})
	}
}

// eofSeen notes that its reader returned io.EOF.
type eofSeen struct {
	r   io.Reader
	eof bool
}

func (e *eofSeen) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.eof = e.eof || err == io.EOF
	return n, err
}

// The decision line of one request, encoded as serve writes it (to nowhere
// here: the logger of config.NewLogger with serve's component attribute),
// with the metrics that go with it.
func BenchmarkDecisionLine(b *testing.B) {
	for _, format := range []string{"json", "text"} {
		b.Run(format, func(b *testing.B) {
			log, err := config.NewLogger(io.Discard, "info", format)
			if err != nil {
				b.Fatal(err)
			}
			e := newEnv(b, func(c *Config) {
				c.Logger = log.With("component", "proxy")
				c.Sink = nil // the line alone
			})
			p := e.proxy
			ev := &Event{ID: "aud_1", Time: time.Now(), TenantID: "ten_1", SandboxID: "sbx_1", Host: "api.test", Method: "GET", Path: "/v1/models",
				Status: 200, Outcome: OutcomeSubstituted, Uses: []Use{{Name: "k", Action: ActionSubstituted}}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				p.finish(ctx, ev, nil)
			}
		})
	}
}
