package clientmatrix

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runAsRoot is the command that runs the matrix with every client: as root
// the test installs what is missing.
const runAsRoot = "sudo go test ./internal/clientmatrix/"

// pythonBin is Debian's python, the one python3-requests installs for (a
// pyenv python first on PATH may lack requests).
const pythonBin = "/usr/bin/python3"

// tools is what this machine has for the matrix: paths, "" when missing.
type tools struct {
	root            bool
	curl, git       string
	python          string // pythonBin when it exists
	requests        bool   // python can import requests
	node, npm       string
	nodeMajor       int
	nodeMinor       int
	installProblems string // why installing failed (root only)
}

func detectTools() *tools {
	tl := &tools{root: os.Geteuid() == 0}
	tl.curl, _ = exec.LookPath("curl")
	tl.git, _ = exec.LookPath("git")
	if _, err := os.Stat(pythonBin); err == nil {
		tl.python = pythonBin
		tl.requests = quiet(pythonBin, "-c", "import requests") == nil
	}
	tl.node, _ = exec.LookPath("node")
	tl.npm, _ = exec.LookPath("npm")
	if tl.node != "" {
		if out, err := exec.Command(tl.node, "--version").Output(); err == nil {
			tl.nodeMajor, tl.nodeMinor = parseNodeVersion(string(out))
		}
	}
	return tl
}

// parseNodeVersion reads "v20.20.2".
func parseNodeVersion(v string) (major, minor int) {
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(v), "v"), ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// nodeEnvProxy says whether this Node's global fetch honours HTTPS_PROXY
// by itself with NODE_USE_ENV_PROXY=1 (Node 24, backported to 22.21).
func (tl *tools) nodeEnvProxy() bool {
	return tl.nodeMajor >= 24 || (tl.nodeMajor == 22 && tl.nodeMinor >= 21)
}

// missingPackages lists the Debian packages that would bring what is
// missing.
func (tl *tools) missingPackages() []string {
	var pkgs []string
	if tl.curl == "" {
		pkgs = append(pkgs, "curl")
	}
	if tl.git == "" {
		pkgs = append(pkgs, "git")
	}
	if !tl.requests {
		pkgs = append(pkgs, "python3-requests")
	}
	if tl.node == "" {
		// Debian's Node is older than 22.21: it needs undici, so npm.
		pkgs = append(pkgs, "nodejs")
		if tl.npm == "" {
			pkgs = append(pkgs, "npm")
		}
	} else if tl.npm == "" && !tl.nodeEnvProxy() && !undiciInstalled() {
		pkgs = append(pkgs, "npm")
	}
	return pkgs
}

// prepareTools finds the clients and, as root, installs the missing ones
// with apt-get (update once, then one install).
func prepareTools(t *testing.T) *tools {
	t.Helper()
	tl := detectTools()
	pkgs := tl.missingPackages()
	if len(pkgs) == 0 || !tl.root {
		return tl
	}
	t.Logf("installing %s with apt-get", strings.Join(pkgs, " "))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var problems []string
	apt := func(args ...string) {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=120"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			problems = append(problems, fmt.Sprintf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 2000)))
		}
	}
	apt("update", "-qq")
	apt(append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)...)
	tl = detectTools()
	tl.installProblems = strings.Join(problems, "\n")
	t.Logf("apt-get took %s", time.Since(start).Round(time.Millisecond))
	return tl
}

// need skips the subtest when what is missing and the test is not root,
// and fails it when it is root (the install was tried and did not bring it).
func (tl *tools) need(t *testing.T, have bool, what, pkg string) {
	t.Helper()
	if have {
		return
	}
	if tl.root {
		t.Fatalf("%s is missing although the test is root and ran apt-get install %s: %s", what, pkg, tl.installProblems)
	}
	t.Skipf("%s is not installed: run `%s` (as root the test installs %s), or apt-get install -y %s first", what, runAsRoot, pkg, pkg)
}

// pinnedUndici is the undici version package-lock.json pins.
func pinnedUndici() (string, error) {
	b, err := os.ReadFile("package-lock.json")
	if err != nil {
		return "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return "", fmt.Errorf("package-lock.json: %w", err)
	}
	v := lock.Packages["node_modules/undici"].Version
	if v == "" {
		return "", fmt.Errorf("package-lock.json pins no undici")
	}
	return v, nil
}

// installedUndici is the version in node_modules, "" when absent.
func installedUndici() string {
	b, err := os.ReadFile("node_modules/undici/package.json")
	if err != nil {
		return ""
	}
	var p struct {
		Version string `json:"version"`
	}
	json.Unmarshal(b, &p)
	return p.Version
}

func undiciInstalled() bool {
	want, err := pinnedUndici()
	return err == nil && installedUndici() == want
}

// quiet runs a command with the test's environment and no output.
func quiet(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).Run()
}

// firstLine runs a command with the test's environment and returns the
// first line of its output (for versions).
func firstLine(name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(%s: %v)", name, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
