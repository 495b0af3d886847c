package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	dir     datadir.Dir
	stdout  *syncBuffer
	log     *syncBuffer
	deps    chan Deps
	cancel  context.CancelFunc
	done    chan error
	admin   string
	metrics string
}

// start runs the server on dir with a stub admin API and waits until both
// listeners have written their address.
func start(t *testing.T, dir datadir.Dir) *running {
	t.Helper()
	r := &running{dir: dir, stdout: &syncBuffer{}, log: &syncBuffer{}, deps: make(chan Deps, 1), done: make(chan error, 1)}
	src, err := datadir.NewKeySource(dir, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cfg := Config{
		Serve:     config.Serve{DataDir: string(dir), AdminListen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", ProxyListen: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second},
		KeySource: src,
		Logger:    slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Stdout:    r.stdout,
		AdminAPI: func(d Deps) (http.Handler, error) {
			r.deps <- d
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Header.Get("Authorization") == "" {
					http.Error(w, "no key", http.StatusUnauthorized)
					return
				}
				io.WriteString(w, "api "+req.URL.Path)
			}), nil
		},
	}
	go func() { r.done <- Run(ctx, cfg) }()
	t.Cleanup(func() { r.stop(t) })
	r.admin = waitAddr(t, dir.Path(datadir.AdminAddrFile), r.done)
	r.metrics = waitAddr(t, dir.Path(datadir.MetricsAddrFile), r.done)
	waitAddr(t, dir.Path(datadir.ProxyAddrFile), r.done)
	waitReady(t, "http://"+r.admin+"/readyz", r.done)
	return r
}

// waitReady polls readyz until it answers 200 (every listener up).
func waitReady(t *testing.T, url string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was ready: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("not ready within the deadline")
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitAddr(t *testing.T, path string, done chan error) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before listening: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %s within the deadline", path)
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if strings.Contains(url, "/api/") {
		req.Header.Set("Authorization", "Bearer x")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunFirstThenSecond(t *testing.T) {
	dir := datadir.Dir(t.TempDir())
	r := start(t, dir)

	var creds datadir.Credentials
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout has %d lines: %q", len(lines), r.stdout.String())
	}
	if err := json.Unmarshal([]byte(lines[0]), &creds); err != nil || creds.APIKey == "" || creds.OperatorKey == "" || creds.TenantName != "default" {
		t.Fatalf("first-run line %q: %v", lines[0], err)
	}
	d := <-r.deps
	if d.Store == nil || d.Resolver == nil || d.Registerer == nil || d.Logger == nil || !bytes.Contains(d.CACertPEM, []byte("BEGIN CERTIFICATE")) ||
		!strings.HasPrefix(d.ProxyURL, "http://localhost:") || strings.HasSuffix(d.ProxyURL, ":0") || d.CABundlePath != config.DefaultCABundlePath {
		t.Fatalf("deps: %+v", d)
	}
	if k, err := d.Store.Authenticate(creds.APIKey); err != nil || k.TenantID != creds.TenantID {
		t.Fatalf("printed key does not authenticate: %v", err)
	}

	for _, c := range []struct{ url, want string }{
		{"http://" + r.admin + "/healthz", `"status":"ok"`},
		{"http://" + r.admin + "/readyz", `"status":"ready"`},
		{"http://" + r.admin + "/api/v1/sandboxes", "api /api/v1/sandboxes"},
		{"http://" + r.metrics + "/metrics", "egressd_resolver_cache_hits_total"},
		{"http://" + r.metrics + "/metrics", "go_goroutines"},
		{"http://" + r.metrics + "/metrics", "process_start_time_seconds"},
	} {
		code, body := get(t, c.url)
		if code != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %q, want 200 with %q", c.url, code, body, c.want)
		}
	}
	r.stop(t)

	for _, f := range []string{datadir.AdminAddrFile, datadir.MetricsAddrFile} {
		if _, err := os.Stat(dir.Path(f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after shutdown", f)
		}
	}
	logs := r.log.String()
	for _, secret := range []string{creds.APIKey, creds.OperatorKey} {
		if strings.Contains(logs, secret) {
			t.Fatal("a key was logged")
		}
	}
	if !strings.Contains(logs, "first run") || !strings.Contains(logs, "vault closed") {
		t.Fatalf("log lacks the first-run or close line:\n%s", logs)
	}

	// The vault was closed: a second server opens it and shows nothing secret.
	r2 := start(t, dir)
	<-r2.deps
	if out := r2.stdout.String(); out != "" {
		t.Fatalf("second run printed %q", out)
	}
	r2.stop(t)
}

// A busy port is found before anything is created: no data dir, no key
// printed (it was found only after the first-run setup).
func TestRunListenerTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := datadir.Dir(filepath.Join(t.TempDir(), "data"))
	src, _ := datadir.NewKeySource(dir, "", false, "")
	var out syncBuffer
	err = Run(context.Background(), Config{
		Serve:     config.Serve{DataDir: string(dir), AdminListen: "127.0.0.1:0", MetricsListen: ln.Addr().String(), ProxyListen: "127.0.0.1:0"},
		KeySource: src,
		Stdout:    &out,
		AdminAPI:  func(Deps) (http.Handler, error) { return http.NotFoundHandler(), nil },
	})
	if err == nil || err.Error() != "--metrics-listen "+ln.Addr().String()+": address already in use" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(string(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Error("the data dir was created before the listeners were checked")
	}
	if out.String() != "" {
		t.Errorf("stdout: %q", out.String())
	}
}

func TestReadyzAfterClose(t *testing.T) {
	dir := datadir.Dir(t.TempDir())
	o, err := datadir.Open(dir, func() datadir.KeySource { s, _ := datadir.NewKeySource(dir, "", false, ""); return s }())
	if err != nil {
		t.Fatal(err)
	}
	h := &health{checks: readyChecksOf(o.Store, time.Second, 0)}
	rec := func() int {
		w := httptest.NewRecorder()
		h.readyz(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}
	if c := rec(); c != http.StatusServiceUnavailable {
		t.Fatalf("not ready yet: %d", c)
	}
	h.ready.Store(true)
	if c := rec(); c != http.StatusOK {
		t.Fatalf("ready: %d", c)
	}
	o.Store.Close()
	if c := rec(); c != http.StatusServiceUnavailable {
		t.Fatalf("closed vault: %d", c)
	}
}
