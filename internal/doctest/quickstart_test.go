//go:build unix

package doctest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickstart returns the README's Quickstart blocks and its stop blocks.
func quickstart(t *testing.T, bs []block) (run, stop []block) {
	t.Helper()
	run = blocksIn(bs, "README.md", modeQuickstart)
	stop = blocksIn(bs, "README.md", modeQuickstartStop)
	if len(run) == 0 || len(stop) == 0 {
		t.Fatalf("README.md has %d blocks marked run: %s and %d marked run: %s", len(run), modeQuickstart, len(stop), modeQuickstartStop)
	}
	return run, stop
}

var (
	secretRE = regexp.MustCompile(`"name":"([A-Za-z_][A-Za-z0-9_]*)","value":"([^"]+)"`)
	exportRE = regexp.MustCompile(`(?m)^export ([A-Za-z_][A-Za-z0-9_]*)='([^']*)'$`)
)

// TestQuickstart runs the README's Quickstart verbatim, its blocks in
// order in one bash, in a workspace that stands for the repository root.
// Its request from the sandbox must have reached the upstream with the
// real value (the echo's log), while the sandbox saw only the placeholder:
// its env, and the answer it printed, never hold the value. Both servers
// must have stopped gracefully at the end.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	needTools(t, "the README's Quickstart", "bash", "curl")
	run, stop := quickstart(t, allBlocks(t))
	all := append(append([]block{}, run...), stop...)
	dir := workspace(t)
	r := runScript(t, dir, script(all))
	if r.err != nil {
		r.report(t, dir, "the Quickstart failed")
	}

	// What the Quickstart stores: the secret's name and its real value.
	var name, value string
	for _, b := range run {
		if m := secretRE.FindStringSubmatch(b.body); m != nil {
			name, value = m[1], m[2]
		}
	}
	if name == "" {
		t.Fatal(`no block of the Quickstart stores a secret ({"name":"…","value":"…"})`)
	}
	// The sandbox's env: the placeholder under the secret's name.
	env := readFile(dir, "sandbox.env")
	placeholder := ""
	for _, m := range exportRE.FindAllStringSubmatch(env, -1) {
		if m[1] == name {
			placeholder = m[2]
		}
	}
	if placeholder == "" || !strings.Contains(placeholder, "EGP_") || strings.Contains(env, value) {
		t.Fatalf("sandbox.env should export %s as a placeholder, and never the value:\n%s", name, env)
	}
	// The sandbox's request: the last block that runs env -i.
	outs := outputs(r.stdout, len(all))
	sandbox := -1
	for i, b := range all {
		if strings.Contains(b.body, "env -i") {
			sandbox = i
		}
	}
	if sandbox < 0 {
		t.Fatal("no block of the Quickstart runs the sandbox (env -i …)")
	}
	answer := outs[sandbox]
	if !strings.Contains(answer, `"Authorization":"Bearer `+placeholder+`"`) || strings.Contains(answer, value) {
		t.Fatalf("the sandbox's answer should show the placeholder %s in Authorization, never the value:\n%s", placeholder, answer)
	}
	echoLog := readFile(dir, "echo.log")
	if !strings.Contains(echoLog, `Authorization="Bearer `+value+`"`) {
		t.Fatalf("the echo's log should show that the real value arrived:\n%s", echoLog)
	}
	// Stopped gracefully: each said so.
	if !strings.Contains(echoLog, "egressd echo: stopped") {
		t.Errorf("the echo did not stop gracefully:\n%s", echoLog)
	}
	if log := readFile(dir, "egressd.log"); !strings.Contains(log, "egressd stopped") || strings.Contains(log, value) {
		t.Errorf("egressd.log should end with egressd stopped and never hold the value:\n%s", tail(log))
	}
}

// TestPages runs each page's examples in the shell of a Quickstart: its
// blocks, the page's "with-quickstart" blocks, the Quickstart's stop
// blocks, then the page's "after-quickstart-stop" blocks; every command
// must succeed. Each page runs in its own workspace, in parallel.
func TestPages(t *testing.T) {
	t.Parallel()
	needTools(t, "the pages' examples", "bash", "curl")
	bs := allBlocks(t)
	run, stop := quickstart(t, bs)
	for _, p := range pages(t) {
		with, after := blocksIn(bs, p, modeWithQuickstart), blocksIn(bs, p, modeAfterStop)
		if len(with)+len(after) == 0 {
			continue
		}
		t.Run(filepath.Base(p), func(t *testing.T) {
			t.Parallel()
			all := append(append(append(append([]block{}, run...), with...), stop...), after...)
			dir := workspace(t)
			if r := runScript(t, dir, script(all)); r.err != nil {
				r.report(t, dir, p+": an example failed")
			}
		})
	}
}

// TestStandalone runs each block marked standalone on its own, in a fresh
// workspace.
func TestStandalone(t *testing.T) {
	t.Parallel()
	needTools(t, "the standalone blocks", "bash")
	for _, b := range allBlocks(t) {
		if b.mark != "run" || b.value != modeStandalone {
			continue
		}
		t.Run(strings.ReplaceAll(b.where(), "/", "_"), func(t *testing.T) {
			t.Parallel()
			dir := workspace(t)
			if r := runScript(t, dir, script([]block{b})); r.err != nil {
				r.report(t, dir, b.where())
			}
		})
	}
}

// TestTwoCommands checks the README's run and test commands. The run
// command is started as written, with its listeners moved to free ports
// by their environment variables (EGRESSD_*_LISTEN: the command sets no
// port, so no other test can collide with it); it must serve /healthz and
// stop on SIGTERM. The test command is this very suite: it is checked to
// be `go test ./...`, which .ci/run runs with -race.
func TestTwoCommands(t *testing.T) {
	t.Parallel()
	needTools(t, "the README's run command", "bash")
	bs := blocksIn(allBlocks(t), "README.md", modeTwoCommands)
	if len(bs) != 1 {
		t.Fatalf("README.md has %d blocks marked run: %s, want 1", len(bs), modeTwoCommands)
	}
	var cmds []string
	for _, l := range strings.Split(strings.TrimSpace(bs[0].body), "\n") {
		c, _, _ := strings.Cut(l, "#")
		cmds = append(cmds, strings.TrimSpace(c))
	}
	if len(cmds) != 2 || cmds[1] != "go test ./..." || !strings.HasPrefix(cmds[0], "go run ./cmd/egressd serve") {
		t.Fatalf("%s: want the run command (go run ./cmd/egressd serve …) and the test command (go test ./...), got %q", bs[0].where(), cmds)
	}
	ci, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "\ngo test -race -count=1 ./...\n") {
		t.Errorf(".ci/run does not run the test command (go test -race -count=1 ./...)")
	}

	dir := workspace(t)
	cmd := exec.Command("bash", "-c", cmds[0])
	cmd.Dir = dir
	cmd.Env = env("EGRESSD_ADMIN_LISTEN=127.0.0.1:0", "EGRESSD_PROXY_LISTEN=127.0.0.1:0", "EGRESSD_METRICS_LISTEN=127.0.0.1:0")
	logs := t.TempDir()
	stdout, err := os.Create(filepath.Join(logs, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(logs, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopGroup(cmd.Process.Pid)
	fail := func(format string, args ...any) {
		t.Helper()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf(format+"\n--- stderr:\n%s", append(args, tail(readFile(logs, "stderr")))...)
	}

	addrFile := filepath.Join(dir, "egressd-data", "admin.addr")
	c := &http.Client{Timeout: time.Second}
	healthy := false
	for deadline := time.Now().Add(2 * time.Minute); !healthy && time.Now().Before(deadline); {
		select {
		case err := <-exited:
			fail("%s exited (%v) before it served", cmds[0], err)
		case <-time.After(100 * time.Millisecond):
		}
		addr := strings.TrimSpace(readFile(filepath.Dir(addrFile), "admin.addr"))
		if addr == "" {
			continue
		}
		if resp, err := c.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			healthy = resp.StatusCode == http.StatusOK
		}
	}
	if !healthy {
		fail("%s did not answer /healthz", cmds[0])
	}
	if out := readFile(logs, "stdout"); !strings.Contains(out, `"api_key":"`) {
		fail("the first start printed no admin key on stdout: %s", out)
	}
	// SIGTERM to the group: go run and the egressd it started.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		fail("%s did not stop on SIGTERM", cmds[0])
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(readFile(logs, "stderr"), "egressd stopped") {
			return
		}
	}
	fail("egressd did not log that it stopped")
}
