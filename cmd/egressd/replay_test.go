package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/certs"
)

// TestReplayGoldenAgainstServe replays the repository's golden cases
// against the real binary: replay --upstream-ca-dir alone makes the
// upstream CA first, so that serve can trust it, then replay runs with it.
func TestReplayGoldenAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("replays every golden case against a server")
	}
	caDir := filepath.Join(t.TempDir(), "upstream-ca")
	if r := egressd(t, nil, "replay", "--upstream-ca-dir", caDir); r.code != 0 || strings.TrimSpace(r.stdout) != filepath.Join(caDir, certs.CACertFile) {
		t.Fatalf("replay --upstream-ca-dir alone: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--allow-private-destinations", "127.0.0.1/32,::1/128", "--upstream-ca", filepath.Join(caDir, certs.CACertFile))
	waitFor(t, "the first-run line on stdout", func() bool { return strings.Contains(s.stdout.String(), "\n") })
	var keys map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(s.stdout.String(), "\n", 2)[0]), &keys); err != nil {
		t.Fatalf("first-run line is not JSON: %v", err)
	}
	if str(keys, "operator_key") == "" {
		t.Fatalf("first-run line has no operator_key: %v", keys)
	}
	r := egressdLong(t, []string{"EGRESSD_OPERATOR_KEY=" + str(keys, "operator_key")},
		"replay", filepath.Join("..", "..", "testdata", "golden"),
		"--admin-url", "http://"+s.admin, "--host-rewrite", "localhost", "--upstream-ca-dir", caDir)
	t.Logf("replay:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("replay exited %d", r.code)
	}
	var ok, skip int
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		switch {
		case strings.HasPrefix(line, "ok "):
			ok++
		case strings.HasPrefix(line, "skip "):
			skip++
		case strings.HasPrefix(line, "FAIL "):
			t.Errorf("%s", line)
		}
	}
	if ok < 40 {
		t.Errorf("%d cases ok, %d skipped: want at least 40 ok", ok, skip)
	}

	// A case whose expectations are wrong fails, field by field, with exit 1.
	bad := t.TempDir()
	data := string(readFile(t, filepath.Join("..", "..", "testdata", "golden", "loc_basic.txtar")))
	data = strings.Replace(data, "level=tenant", "level=user", 1)
	data = strings.Replace(data, "Authorization: Basic {{base64 {{value k}}:}}", "Authorization: Basic {{base64 {{placeholder sbx1 openai_key}}:}}", 1)
	if err := os.WriteFile(filepath.Join(bad, "loc_basic_broken.txtar"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	r = egressdLong(t, []string{"EGRESSD_OPERATOR_KEY=" + str(keys, "operator_key")},
		"replay", bad, "--admin-url", "http://"+s.admin, "--host-rewrite", "localhost", "--upstream-ca-dir", caDir)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "FAIL loc_basic_broken\n") ||
		!strings.Contains(r.stdout, "upstream header Authorization: got Basic {{base64 {{value k}}:}}, want") ||
		!strings.Contains(r.stdout, `audit use: missing "header substituted name=openai_key level=user version=1"`) {
		t.Errorf("broken case: exit %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "sk-live-") {
		t.Errorf("replay output holds a secret value:\n%s", r.stdout)
	}
}
