package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/datadir"
)

// serveReadyTimeout bounds egressd serve's start (to /readyz 200) and stop.
const serveReadyTimeout = 5 * time.Minute

// serveProc is a running egressd serve.
type serveProc struct {
	cmd    *exec.Cmd
	admin  string
	stderr *tailBuffer
	exited chan struct{}
}

// tailBuffer keeps the last of what serve writes to stderr, for errors
// (read once serve has exited).
type tailBuffer struct{ b []byte }

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if len(w.b) > 64<<10 {
		w.b = append([]byte(nil), w.b[len(w.b)-32<<10:]...)
	}
	return len(p), nil
}

// buildEgressd builds cmd/egressd of this module into dir.
func buildEgressd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "egressd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/egressd/egressd/cmd/egressd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build cmd/egressd: %w", err)
	}
	return bin, nil
}

// startServe starts bin serve on dataDir, every listener on 127.0.0.1 with
// a free port, with an environment free of EGRESSD_ settings, and returns
// once /readyz answers 200, with how long that took from the start.
func startServe(ctx context.Context, bin, dataDir string) (*serveProc, time.Duration, error) {
	dir := datadir.Dir(dataDir)
	for _, f := range []string{datadir.AdminAddrFile, datadir.MetricsAddrFile, datadir.ProxyAddrFile} {
		os.Remove(dir.Path(f))
	}
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--admin-listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESSD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &serveProc{cmd: cmd, stderr: &tailBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	fail := func(err error) (*serveProc, time.Duration, error) {
		p.kill()
		return nil, 0, fmt.Errorf("egressd serve: %w; its stderr ends:\n%s", err, p.stderr.b)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(serveReadyTimeout)
	for {
		if p.admin == "" {
			if b, err := os.ReadFile(dir.Path(datadir.AdminAddrFile)); err == nil && len(b) > 0 {
				p.admin = strings.TrimSpace(string(b))
			}
		}
		if p.admin != "" {
			if resp, err := c.Get("http://" + p.admin + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p, time.Since(t0), nil
				}
			}
		}
		select {
		case <-p.exited:
			return fail(errors.New("exited before it was ready"))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("not ready within %s", serveReadyTimeout))
		}
	}
}

// stop sends SIGTERM and waits for the exit (a kill after the timeout).
func (p *serveProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("egressd serve exited %d; its stderr ends:\n%s", code, p.stderr.b)
		}
		return nil
	case <-time.After(serveReadyTimeout):
		p.kill()
		return errors.New("egressd serve did not stop within its timeout")
	}
}

func (p *serveProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// memory is serve's resident memory from /proc (Linux; zero elsewhere):
// anonymous pages are its own, file pages are mostly the bbolt map.
type memory struct {
	RSS, HWM, Anon, File int64 // KiB
}

func (p *serveProc) memory() memory {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return memory{}
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = n
		case "VmHWM":
			m.HWM = n
		case "RssAnon":
			m.Anon = n
		case "RssFile":
			m.File = n
		}
	}
	return m
}

// apiTiming is one admin API call timed n times.
type apiTiming struct {
	Name     string
	Path     string // the first call's, ids shown as they were
	N        int
	P50, P99 time.Duration
	Items    int // items in the first answer (rows, secrets, env entries)
	Bytes    int // size of the first answer
	Page     bool
}

// timeCalls calls each of paths in turn (round robin) n times in all with
// key, and returns the latencies' p50 and p99. Every answer must be 200.
func (p *serveProc) timeCalls(ctx context.Context, name, key, field string, n int, paths ...string) (apiTiming, error) {
	c := &http.Client{Timeout: time.Minute}
	t := apiTiming{Name: name, Path: paths[0], N: n}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+paths[i%len(paths)], nil)
		if err != nil {
			return t, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return t, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err != nil {
			return t, err
		}
		if resp.StatusCode != http.StatusOK {
			return t, fmt.Errorf("%s: GET %s: %s: %.300s", name, paths[i%len(paths)], resp.Status, body)
		}
		if i == 0 {
			t.Bytes, t.Items = len(body), countItems(body, field)
		}
	}
	slices.Sort(lat)
	t.P50, t.P99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	return t, nil
}

// countItems is the length of the list or object field of a JSON answer
// (-1 when there is none).
func countItems(body []byte, field string) int {
	if field == "" {
		return -1
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return -1
	}
	var list []json.RawMessage
	if json.Unmarshal(m[field], &list) == nil {
		return len(list)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(m[field], &obj) == nil {
		return len(obj)
	}
	return -1
}

// apiCalls times what the dashboard's list and audit pages ask, and GET
// …/env, on the large tenant (keys[0]) and a typical one (keys[1]).
func apiCalls(ctx context.Context, p *serveProc, g *generated, n int) ([]apiTiming, error) {
	var out []apiTiming
	add := func(name, key, field string, paths ...string) error {
		t, err := p.timeCalls(ctx, name, key, field, n, paths...)
		if err != nil {
			return err
		}
		out = append(out, t)
		return nil
	}
	q := url.QueryEscape
	for i, t := range g.Tenants[:min(2, len(g.Tenants))] {
		key, who := g.Keys[i], "large tenant"
		if i == 1 {
			who = "typical tenant"
		}
		// Distinct sandboxes: the first env of each issues its
		// placeholders (a write), the second reads them.
		var env []string
		for j := range min(n, len(t.Sandboxes)) {
			env = append(env, "/api/v1/sandboxes/"+q(t.Sandboxes[j])+"/env")
		}
		sbx := t.Sandboxes[len(t.Sandboxes)/2]
		// page: the dashboard asks it when the page opens as it is
		// (secrets, sandboxes, audit: since=24h by default), or with one
		// filter set; the others are wider views a user can choose.
		steps := []struct {
			name, field string
			page        bool
			paths       []string
		}{
			{"GET …/env, first (issues placeholders)", "env", false, env},
			{"GET …/env, again", "env", false, env},
			{"secrets list, first page", "secrets", true, []string{"/api/v1/egress/secrets?limit=100"}},
			{"secrets list, filter external_user_id", "secrets", true, []string{"/api/v1/egress/secrets?limit=100&external_user_id=eu1"}},
			{"sandboxes list, first page", "sandboxes", true, []string{"/api/v1/sandboxes?limit=100"}},
			{"audit list, since=24h (the page's default)", "rows", true, []string{"/api/v1/audit?since=24h&limit=100"}},
			{"audit summary, since=24h (the page's chart)", "", true, []string{"/api/v1/audit/summary?since=24h"}},
			{"audit list, since=24h, filter sandbox_id", "rows", true, []string{"/api/v1/audit?since=24h&limit=100&sandbox_id=" + q(sbx)}},
			{"audit summary, since=24h, filter sandbox_id", "", true, []string{"/api/v1/audit/summary?since=24h&sandbox_id=" + q(sbx)}},
			{"audit list, all time", "rows", false, []string{"/api/v1/audit?limit=100"}},
			{"audit summary, since=90d (the chart for all time)", "", false, []string{"/api/v1/audit/summary?since=90d"}},
			{"audit list, all time, filter outcome=denied", "rows", false, []string{"/api/v1/audit?limit=100&outcome=denied"}},
		}
		for _, s := range steps {
			if s.name == "GET …/env, first (issues placeholders)" && len(env) < n {
				// Fewer sandboxes than calls: the first round only.
				t, err := p.timeCalls(ctx, s.name, key, s.field, len(env), env...)
				if err != nil {
					return nil, err
				}
				t.Name = who + ": " + t.Name
				out = append(out, t)
				continue
			}
			if err := add(who+": "+s.name, key, s.field, s.paths...); err != nil {
				return nil, err
			}
			out[len(out)-1].Page = s.page
		}
	}
	return out, nil
}
