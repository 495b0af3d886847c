package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/client"
)

// raceEnabled is set by race_test.go; the binary under test is then built
// with -race too.
var raceEnabled bool

// bin is the egressd binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "egressd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bin = filepath.Join(tmp, "egressd")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build egressd:", err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command: on PATH, else next to GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// baseEnv is the test's environment without any EGRESSD_ variable, so that
// an operator's settings never leak into a test.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESSD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of exec.
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

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// egressd runs the binary to completion (at most 30s) with env added to
// the cleaned environment.
func egressd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return egressdWithin(t, 30*time.Second, env, args...)
}

// egressdLong is egressd with a deadline of three minutes.
func egressdLong(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return egressdWithin(t, 3*time.Minute, env, args...)
}

// egressdWithin is egressd with a deadline of d.
func egressdWithin(t *testing.T, d time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = baseEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("egressd %s did not finish within %s; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), d, r.stdout, r.stderr)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run egressd: %v", err)
	}
	return r
}

// mustInit runs egressd init and decodes its JSON.
func mustInit(t *testing.T, env []string, args ...string) map[string]any {
	t.Helper()
	r := egressd(t, env, append([]string{"init"}, args...)...)
	if r.code != 0 {
		t.Fatalf("init exited %d: %s", r.code, r.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("init stdout is not one JSON object: %v\n%s", err, r.stdout)
	}
	return out
}

// proc is a running egressd serve.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	admin, metrics string
}

// serve starts egressd serve on dataDir with free ports and waits until it
// has written both listener addresses. Extra args and env are added.
func serve(t *testing.T, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	s := startServe(t, dataDir, env, args...)
	s.admin = s.waitAddr(t, filepath.Join(dataDir, "admin.addr"))
	s.metrics = s.waitAddr(t, filepath.Join(dataDir, "metrics.addr"))
	s.waitReady(t)
	return s
}

// waitReady polls /readyz until the server says it is ready (every
// listener up), with a deadline.
func (s *proc) waitReady(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + s.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("serve exited before it was ready; stderr:\n%s", s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("serve did not become ready")
}

// startServe starts egressd serve without waiting for it.
func startServe(t *testing.T, dataDir string, env []string, args ...string) *proc {
	t.Helper()
	// A stale address file would point at a dead listener.
	os.Remove(filepath.Join(dataDir, "admin.addr"))
	os.Remove(filepath.Join(dataDir, "metrics.addr"))
	os.Remove(filepath.Join(dataDir, "proxy.addr"))
	all := append([]string{"serve", "--data-dir", dataDir, "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"}, args...)
	s := &proc{cmd: exec.Command(bin, all...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd.Env = baseEnv(env...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

func (s *proc) waitAddr(t *testing.T, path string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-s.exited:
			t.Fatalf("serve exited with %d before listening; stderr:\n%s", s.cmd.ProcessState.ExitCode(), s.stderr.String())
		case <-deadline:
			t.Fatalf("serve wrote no %s within 20s; stderr:\n%s", path, s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// wait waits (at most 20s) for serve to exit by itself and returns its code.
func (s *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not exit within 20s; stderr:\n%s", s.stderr.String())
		return -1
	}
}

// stop sends SIGTERM and returns the exit code.
func (s *proc) stop(t *testing.T) int {
	t.Helper()
	return s.stopWith(t, syscall.SIGTERM)
}

// stopWith sends sig and returns the exit code.
func (s *proc) stopWith(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return s.wait(t)
}

// call sends a request to the admin listener with the key (if any) and
// returns the status and body.
func (s *proc) call(t *testing.T, method, path, key string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(t, req)
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// str returns m[k] as a string ("" if absent or not a string).
func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// tlsUpstream is a loopback HTTPS upstream with its own CA, for
// "localhost"; it records what it receives.
func tlsUpstream(t *testing.T) (rec *upstreamRecorder, port int, caFile string) {
	t.Helper()
	rec = &upstreamRecorder{}
	port, caFile = tlsServer(t, rec)
	return rec, port, caFile
}

// tlsServer serves h over HTTPS on a loopback port, with a CA of its own
// (in caFile) that signs a leaf for whatever name a client asks for
// ("localhost"); it is closed when the test ends.
func tlsServer(t *testing.T, h http.Handler) (port int, caFile string) {
	t.Helper()
	upCA, _, err := certs.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := certs.NewLeafCache(upCA, certs.LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(h)
	up.TLS = &tls.Config{GetCertificate: leaves.GetCertificate}
	up.StartTLS()
	t.Cleanup(up.Close)
	caFile = filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, upCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return up.Listener.Addr().(*net.TCPAddr).Port, caFile
}

// boundSandbox creates a sandbox, binds the secret to it as the env var
// name, and returns the sandbox and the placeholder its env holds there.
func boundSandbox(t *testing.T, api *client.Client, in client.SandboxInput, secretID, name string) (client.SandboxCreated, string) {
	t.Helper()
	ctx := context.Background()
	sbx, err := api.CreateSandbox(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateBinding(ctx, client.BindingInput{SecretID: secretID, ResourceID: sbx.ID, ExposeAsEnv: name}); err != nil {
		t.Fatal(err)
	}
	env, err := api.SandboxEnv(ctx, sbx.ID)
	if err != nil {
		t.Fatal(err)
	}
	return sbx, env.Env[name]
}
