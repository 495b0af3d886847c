package clientmatrix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// raceEnabled is set by race_test.go; egressd is then built with -race too.
var raceEnabled bool

// bin is the egressd binary built by TestMain.
var bin string

// goClientArg, as the test binary's first argument, makes it the Go client
// of the matrix instead of running tests (see goClient).
const goClientArg = "clientmatrix-go-client"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == goClientArg {
		os.Exit(goClient(os.Args[2:]))
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "clientmatrix-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bin = filepath.Join(tmp, "egressd")
	// No VCS stamp: the version does not matter here, and git refuses a
	// work tree owned by another user.
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, "github.com/egressd/egressd/cmd/egressd")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build egressd:", err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command: on PATH, else under GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
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

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// server is a running egressd serve.
type server struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
	admin, proxy   string // host:port
	apiKey         string
}

// startEgressd runs egressd serve on a fresh data dir with free loopback
// ports and waits until it is ready and has printed its admin key.
func startEgressd(t *testing.T, dataDir string, args ...string) *server {
	t.Helper()
	all := append([]string{"serve", "--data-dir", dataDir,
		"--admin-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--log-format", "text"}, args...)
	s := &server{cmd: exec.Command(bin, all...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	// No operator EGRESSD_ setting leaks into the test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESSD_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
	s.admin = s.waitFile(t, filepath.Join(dataDir, "admin.addr"))
	s.proxy = s.waitFile(t, filepath.Join(dataDir, "proxy.addr"))
	s.waitReady(t)
	s.poll(t, "the first-run line with api_key on stdout", func() bool {
		line, _, ok := strings.Cut(s.stdout.String(), "\n")
		if !ok {
			return false
		}
		var first struct {
			APIKey string `json:"api_key"`
		}
		if err := json.Unmarshal([]byte(line), &first); err != nil {
			t.Fatalf("egressd's first stdout line is not JSON: %v", err)
		}
		s.apiKey = first.APIKey
		return true
	})
	if s.apiKey == "" {
		t.Fatal("egressd's first-run line has no api_key")
	}
	return s
}

// poll checks cond every 10ms until it holds; it fails the test after 20s
// or when egressd exits.
func (s *server) poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-s.exited:
			t.Fatalf("egressd exited with %d while waiting for %s; stderr:\n%s", s.cmd.ProcessState.ExitCode(), what, s.stderr.String())
		case <-deadline:
			t.Fatalf("no %s within 20s; egressd's stderr:\n%s", what, s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *server) waitFile(t *testing.T, path string) string {
	t.Helper()
	var v string
	s.poll(t, path, func() bool {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err == nil && v != ""
	})
	return v
}

func (s *server) waitReady(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	s.poll(t, "200 from /readyz", func() bool {
		resp, err := c.Get("http://" + s.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// call sends a request to the admin API with the admin key; body (if not
// nil) goes as JSON. It returns the status and the answer.
func (s *server) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}
