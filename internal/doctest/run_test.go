//go:build unix

package doctest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scriptTimeout bounds one script: a Quickstart and a page's examples.
const scriptTimeout = 3 * time.Minute

// needTools skips the test when a command a block runs is missing.
func needTools(t *testing.T, what string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed, and %s runs it", tool, what)
		}
	}
}

// workspace returns a directory that stands for the repository root: it
// links go.mod, go.sum and every top-level folder of the repository (not
// the hidden ones or the Quickstart's data dir), and holds nothing else,
// so that what a block writes stays out of the repository.
//
// The directory is one of a few fixed slots under the temporary directory,
// locked (flock) while a test uses it: the go command's build cache keys
// a package on its directory, so a fixed path lets a block's `go build`
// reuse the last run's work where a fresh directory would compile every
// package of the repository again.
func workspace(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	sum := sha256.Sum256([]byte(root))
	base := filepath.Join(os.TempDir(), fmt.Sprintf("egressd-doctest-%d", os.Getuid()), fmt.Sprintf("%x", sum[:6]))
	if err := os.MkdirAll(base, 0o700); err != nil {
		t.Fatal(err)
	}
	var dir string
	for n := 0; dir == ""; n++ {
		if n == 64 {
			t.Fatalf("all 64 workspace slots under %s are in use", base)
		}
		lock, err := os.OpenFile(filepath.Join(base, fmt.Sprintf("slot%d.lock", n)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			continue
		}
		t.Cleanup(func() { lock.Close() }) // closing releases the lock
		dir = filepath.Join(base, fmt.Sprintf("slot%d", n))
	}
	// What a run wrote (binaries, data dirs) goes when the test ends; the
	// path stays, and with it the build cache's entries.
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Start empty: what the last run wrote goes, links are made afresh.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "go.mod" || name == "go.sum" || e.IsDir() && !strings.HasPrefix(name, ".") && name != "egressd-data" {
			if err := os.Symlink(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// env is the environment of a script: the test's, without EGRESSD_
// variables (an operator's settings must not change a block), with the go
// command on PATH, and extra added.
func env(extra ...string) []string {
	var out []string
	path := os.Getenv("PATH")
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "EGRESSD_") || strings.HasPrefix(kv, "PATH=") {
			continue
		}
		out = append(out, kv)
	}
	if _, err := exec.LookPath("go"); err != nil {
		path = filepath.Join(runtime.GOROOT(), "bin") + string(os.PathListSeparator) + path
	}
	return append(append(out, "PATH="+path), extra...)
}

// script joins blocks into one bash script, each verbatim. Before each
// block it prints a marker line on stdout and stderr, so that the output of
// each block can be told apart, and an ERR trap names the block and line
// that failed.
func script(bs []block) string {
	var lines []string
	add := func(l ...string) { lines = append(lines, l...) }
	add("set -euo pipefail",
		`trap 'echo "doctest: a command failed in the block at $doctest_block, its line $((LINENO - doctest_offset))" >&2' ERR`)
	for i, b := range bs {
		add(fmt.Sprintf("doctest_block=%q", b.where()),
			fmt.Sprintf("printf '\\n%%s\\n' %q; printf '\\n%%s\\n' %q >&2", marker(i), marker(i)))
		add(fmt.Sprintf("doctest_offset=%d", len(lines)+1))
		add(strings.Split(strings.TrimSuffix(b.body, "\n"), "\n")...)
	}
	return strings.Join(lines, "\n") + "\n"
}

// marker is the line printed before block i.
func marker(i int) string { return fmt.Sprintf("@@doctest block %d@@", i) }

// outputs splits a script's stdout into the output of each block.
func outputs(stdout string, n int) []string {
	out := make([]string, n)
	for i := n - 1; i >= 0; i-- {
		before, after, ok := strings.Cut(stdout, "\n"+marker(i)+"\n")
		if !ok {
			continue
		}
		out[i], stdout = after, before
	}
	return out
}

// result is what a script left.
type result struct {
	stdout, stderr string
	err            error
}

// runScript runs text with bash in dir, in its own process group, which is
// killed afterwards with whatever the script left running (a failed
// Quickstart leaves its servers). stdout and stderr go to files, so that a
// background process holding them cannot keep the run open.
func runScript(t *testing.T, dir, text string, extraEnv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	logs := t.TempDir()
	outF, err := os.Create(filepath.Join(logs, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(logs, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd := exec.CommandContext(ctx, "bash", "-c", text)
	cmd.Dir = dir
	cmd.Env = env(extraEnv...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	runErr := cmd.Run()
	if cmd.Process != nil {
		stopGroup(cmd.Process.Pid)
	}
	if ctx.Err() != nil {
		runErr = fmt.Errorf("the script did not finish within %s", scriptTimeout)
	}
	stdout, _ := os.ReadFile(outF.Name())
	stderr, _ := os.ReadFile(errF.Name())
	return result{stdout: string(stdout), stderr: string(stderr), err: runErr}
}

// stopGroup ends what is left of process group pgid: SIGTERM, then
// SIGKILL after a grace period.
func stopGroup(pgid int) {
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // nothing left
	}
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
			return
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// report fails t with a script's output and the logs it left in dir.
func (r result) report(t *testing.T, dir, what string) {
	t.Helper()
	logs := ""
	for _, name := range []string{"echo.log", "egressd.log"} {
		if l := readFile(dir, name); l != "" {
			logs += "\n--- " + name + ":\n" + tail(l)
		}
	}
	t.Fatalf("%s: %v\n--- stdout:\n%s\n--- stderr:\n%s%s", what, r.err, tail(r.stdout), tail(r.stderr), logs)
}

func tail(s string) string {
	const n = 6000
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// readFile returns a file of a workspace, "" when it is missing.
func readFile(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return string(b)
}
