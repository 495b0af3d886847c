package clientmatrix

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The secret the clients use, by the name of its env var.
const secretName = "UPSTREAM_TOKEN"

// caTrustVars are the variables the sandbox env must point at the CA
// bundle (--ca-bundle-path): what curl, git, Python, Node, Go, cargo, the
// AWS SDKs, Deno, pip, npm and Hex read.
var caTrustVars = []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE", "DENO_CERT", "PIP_CERT", "NPM_CONFIG_CAFILE", "HEX_CACERTS_PATH"}

var proxyVars = []string{"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"}

// sandboxCreated is the part of POST /api/v1/sandboxes's answer the test
// reads.
type sandboxCreated struct {
	ID         string            `json:"id"`
	ProxyToken string            `json:"proxy_token"`
	ProxyURL   string            `json:"proxy_url"`
	Env        map[string]string `json:"env"`
}

// matrix is the running setup the subtests share.
type matrix struct {
	tools       *tools
	e           *server
	up          *upstream
	dataDir     string
	bundle      string // the CA bundle file, --ca-bundle-path
	real        string // the secret's value
	placeholder string // the sandbox's placeholder for it
	sbx         sandboxCreated
	env         []string // the clients' whole environment
	home        string
	commit      string // the commit in repo.git ("" without git)

	mu   sync.Mutex
	rows []string // the closing table
}

// TestClientMatrix runs real clients, each with nothing but a sandbox's env
// from the admin API (plus PATH and HOME), through a real egressd to a
// loopback HTTPS upstream reached by name, and checks that the upstream got
// the real value for the placeholder the client sent and that the client
// never printed the real value.
func TestClientMatrix(t *testing.T) {
	m := &matrix{tools: prepareTools(t), real: "cm-real-" + randomHex(t, 16)}
	tmp := t.TempDir()
	m.home = filepath.Join(tmp, "home")
	m.bundle = filepath.Join(tmp, "ca-bundle.pem")
	m.dataDir = filepath.Join(tmp, "data")
	if err := os.Mkdir(m.home, 0o700); err != nil {
		t.Fatal(err)
	}

	var git http.Handler
	if m.tools.git != "" {
		srvRoot := filepath.Join(tmp, "git")
		m.commit = makeRepo(t, m.tools.git, srvRoot, filepath.Join(tmp, "git-home"))
		git = gitBackend(m.tools.git, srvRoot, filepath.Join(tmp, "git-home"))
	}
	m.up = startUpstream(t, m.real, git)

	m.e = startEgressd(t, m.dataDir,
		"--upstream-ca", m.up.caFile,
		"--allow-private-destinations", "127.0.0.1/32",
		"--static-hosts", upstreamHost+"=127.0.0.1",
		"--ca-bundle-path", m.bundle)

	st, body := m.e.call(t, http.MethodPost, "/api/v1/egress/secrets", map[string]any{
		"name": secretName, "value": m.real, "scope": "tenant", "allowed_hosts": []string{upstreamHost},
	})
	if st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create secret: %d %s", st, body)
	}
	st, body = m.e.call(t, http.MethodPost, "/api/v1/sandboxes", map[string]any{"owner_user_id": "alice"})
	if st != http.StatusCreated {
		t.Fatalf("create sandbox: %d %s", st, body)
	}
	if err := json.Unmarshal(body, &m.sbx); err != nil {
		t.Fatalf("create sandbox: %v in %s", err, body)
	}
	m.placeholder = m.sbx.Env[secretName]
	if m.placeholder == "" || m.placeholder == m.real || m.sbx.ProxyToken == "" || m.sbx.Env["HTTPS_PROXY"] == "" {
		t.Fatalf("the sandbox env lacks the placeholder under %s or HTTPS_PROXY, or the answer lacks proxy_token: %s", secretName, m.redact(string(body)))
	}

	// The bundle the CA-trust variables point at: the system roots and
	// egressd's CA, as a platform would put it into the sandbox image.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + m.e.admin + "/api/v1/ca.pem?bundle=system")
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/ca.pem?bundle=system: %d %v %s", resp.StatusCode, err, pemBytes)
	}
	if err := os.WriteFile(m.bundle, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, k := range slices.Sorted(maps.Keys(m.sbx.Env)) {
		m.env = append(m.env, k+"="+m.sbx.Env[k])
	}
	m.env = append(m.env, "PATH="+os.Getenv("PATH"), "HOME="+m.home)

	t.Run("sandbox_env", m.testSandboxEnv)
	t.Run("curl", m.testCurl)
	t.Run("curl_proxy_anyauth", m.testCurlAnyauth)
	t.Run("curl_shell_env", m.testCurlShellEnv)
	t.Run("git_ls_remote", m.testGitLsRemote)
	t.Run("git_clone", m.testGitClone)
	t.Run("python_requests", m.testPythonRequests)
	t.Run("python_urllib", m.testPythonUrllib)
	t.Run("node_fetch", m.testNodeFetch)
	t.Run("go_net_http", m.testGoNetHTTP)

	if strings.Contains(m.e.stderr.String(), m.real) || strings.Contains(m.e.stdout.String(), m.real) {
		t.Errorf("egressd's log holds the real value")
	}
	t.Logf("the matrix (client | version | result | what it needed):\n%s", strings.Join(m.rows, "\n"))
}

// row notes the subtest's line of the closing table; its result is read
// when the subtest ends.
func (m *matrix) row(t *testing.T, client, version, needed string) {
	t.Helper()
	t.Logf("%s: %s; needs %s", client, version, needed)
	t.Cleanup(func() {
		res := "works"
		switch {
		case t.Skipped():
			res = "skipped"
		case t.Failed():
			res = "FAILS"
		}
		m.mu.Lock()
		m.rows = append(m.rows, fmt.Sprintf("%s | %s | %s | %s", client, version, res, needed))
		m.mu.Unlock()
	})
}

// testSandboxEnv checks the env contract the clients rely on.
func (m *matrix) testSandboxEnv(t *testing.T) {
	env := m.sbx.Env
	pu, err := url.Parse(m.sbx.ProxyURL)
	if err != nil {
		t.Fatalf("proxy_url: %v", err)
	}
	if pw, _ := pu.User.Password(); pu.User.Username() != m.sbx.ID || pw != m.sbx.ProxyToken {
		t.Errorf("proxy_url does not carry the sandbox id and token")
	}
	if _, port, _ := net.SplitHostPort(m.e.proxy); pu.Port() != port {
		t.Errorf("proxy_url port %q, egressd's proxy listens on %s", pu.Port(), m.e.proxy)
	}
	for _, v := range proxyVars {
		if env[v] != m.sbx.ProxyURL {
			t.Errorf("%s = %q, want proxy_url", v, m.redact(env[v]))
		}
	}
	for _, v := range []string{"NO_PROXY", "no_proxy"} {
		if env[v] != "localhost,127.0.0.1,::1" {
			t.Errorf("%s = %q, want localhost,127.0.0.1,::1", v, env[v])
		}
	}
	if env["NODE_USE_ENV_PROXY"] != "1" {
		t.Errorf("NODE_USE_ENV_PROXY = %q, want 1", env["NODE_USE_ENV_PROXY"])
	}
	for _, v := range caTrustVars {
		if env[v] != m.bundle {
			t.Errorf("%s = %q, want the --ca-bundle-path %s", v, env[v], m.bundle)
		}
	}

	// The bundle: system roots, then egressd's CA.
	b, err := os.ReadFile(m.bundle)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(m.dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), strings.TrimSpace(string(ca))) {
		t.Errorf("the ?bundle=system answer does not hold egressd's CA (DATA/ca.pem)")
	}
	n := strings.Count(string(b), "-----BEGIN CERTIFICATE-----")
	t.Logf("the CA bundle holds %d certificates", n)
	if n < 2 {
		t.Errorf("the ?bundle=system answer holds %d certificate(s), want the system roots too", n)
	}

	// GET .../env: the same env, with <proxy-token> for the token.
	st, body := m.e.call(t, http.MethodGet, "/api/v1/sandboxes/"+m.sbx.ID+"/env?format=json", nil)
	if st != http.StatusOK {
		t.Fatalf("GET env?format=json: %d %s", st, body)
	}
	if strings.Contains(string(body), m.sbx.ProxyToken) {
		t.Errorf("GET env shows the proxy token")
	}
	var got struct {
		Env map[string]string `json:"env"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range env {
		want := strings.ReplaceAll(v, m.sbx.ProxyToken, "<proxy-token>")
		if got.Env[k] != want {
			t.Errorf("GET env: %s = %q, want %q", k, got.Env[k], want)
		}
	}
	for _, f := range []string{"dotenv", "shell"} {
		st, body := m.e.call(t, http.MethodGet, "/api/v1/sandboxes/"+m.sbx.ID+"/env?format="+f, nil)
		if st != http.StatusOK || !strings.Contains(string(body), secretName+"=") || !strings.Contains(string(body), m.placeholder) {
			t.Errorf("GET env?format=%s: %d %s", f, st, body)
		}
		if strings.Contains(string(body), m.sbx.ProxyToken) {
			t.Errorf("GET env?format=%s shows the proxy token", f)
		}
	}
}

// curlVersion is curl's version, libcurl's and its TLS library's.
func curlVersion(curl string) string {
	f := strings.Fields(firstLine(curl, "--version"))
	if len(f) < 5 {
		return strings.Join(f, " ")
	}
	return strings.Join([]string{f[0], f[1], f[3], f[4]}, " ")
}

// curlCommand is how a sandbox user calls an API with curl: the
// placeholder from the env in a Bearer header.
const curlCommand = `curl -sS --fail-with-body --max-time 20 %s-H "Authorization: Bearer $UPSTREAM_TOKEN" "$1"`

func (m *matrix) testCurl(t *testing.T) {
	m.tools.need(t, m.tools.curl != "", "curl", "curl")
	m.row(t, "curl", curlVersion(m.tools.curl), "nothing: HTTPS_PROXY and CURL_CA_BUNDLE from the env")
	m.bearer(t, "/curl", "sh", "-c", fmt.Sprintf(curlCommand, ""), "sh", m.up.url("/curl"))
}

// testCurlAnyauth: curl first sends CONNECT without credentials, gets 407
// with Proxy-Authenticate: Basic, and retries on the same connection.
func (m *matrix) testCurlAnyauth(t *testing.T) {
	m.tools.need(t, m.tools.curl != "", "curl", "curl")
	m.row(t, "curl --proxy-anyauth", curlVersion(m.tools.curl), "the proxy's 407 challenge, the connection kept for the retry")
	logMark := m.e.stderr.Len()
	m.bearer(t, "/curl-anyauth", "sh", "-c", fmt.Sprintf(curlCommand, "--proxy-anyauth "), "sh", m.up.url("/curl-anyauth"))
	if n := m.challenges(logMark); n == 0 {
		t.Errorf("egressd logged no 407 %s: curl --proxy-anyauth asks without credentials first, so the challenge path went untested (or the log's wording changed)", noCredentials)
	}
}

// noCredentials is how egressd's text log names a 407 that asks for
// credentials.
const noCredentials = "reason=no_credentials"

// challenges counts the 407s asking for credentials that egressd logged
// since logMark.
func (m *matrix) challenges(logMark int) int {
	return strings.Count(m.e.stderr.String()[logMark:], noCredentials)
}

// testCurlShellEnv: a platform that starts its sandbox from the shell
// format of the creation answer (`. ./egressd.env`).
func (m *matrix) testCurlShellEnv(t *testing.T) {
	m.tools.need(t, m.tools.curl != "", "curl", "curl")
	m.row(t, "curl, env from POST ?format=shell", curlVersion(m.tools.curl), "the shell answer sourced by sh")
	st, body := m.e.call(t, http.MethodPost, "/api/v1/sandboxes?format=shell", map[string]any{"owner_user_id": "bob"})
	if st != http.StatusCreated {
		t.Fatalf("POST /api/v1/sandboxes?format=shell: %d %s", st, body)
	}
	file := filepath.Join(t.TempDir(), "egressd.env")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	mark, logMark := m.up.mark(), m.e.stderr.Len()
	out, err := m.runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + m.home},
		"sh", "-c", `. "$2" && `+fmt.Sprintf(curlCommand, ""), "sh", m.up.url("/curl-shell-env"), file)
	m.checkBearer(t, "/curl-shell-env", mark, logMark, out, err)
}

func (m *matrix) testGitLsRemote(t *testing.T) {
	m.tools.need(t, m.tools.git != "", "git", "git")
	m.row(t, "git ls-remote", firstLine(m.tools.git, "--version"), "the upstream's 401 Basic challenge (git sends credentials only then); the proxy's 407 challenge (git proxies with anyauth)")
	mark, logMark := m.up.mark(), m.e.stderr.Len()
	out, err := m.run(t, "sh", "-c", `git ls-remote "https://x-access-token:$UPSTREAM_TOKEN@$1/repo.git"`, "sh", m.hostPort())
	m.checkGit(t, mark, logMark, out, err)
	if err == nil && !strings.Contains(out, m.commit+"\trefs/heads/main") {
		t.Errorf("git ls-remote does not list %s refs/heads/main:\n%s", m.commit, m.redact(out))
	}
}

func (m *matrix) testGitClone(t *testing.T) {
	m.tools.need(t, m.tools.git != "", "git", "git")
	m.row(t, "git clone", firstLine(m.tools.git, "--version"), "as git ls-remote (smart HTTP, protocol v2)")
	dir := filepath.Join(t.TempDir(), "clone")
	mark, logMark := m.up.mark(), m.e.stderr.Len()
	out, err := m.run(t, "sh", "-c", `git clone "https://x-access-token:$UPSTREAM_TOKEN@$1/repo.git" "$2"`, "sh", m.hostPort(), dir)
	m.checkGit(t, mark, logMark, out, err)
	if err != nil {
		return
	}
	head, err := m.run(t, "git", "-C", dir, "rev-parse", "HEAD")
	if err != nil || strings.TrimSpace(head) != m.commit {
		t.Errorf("the clone's HEAD is %q (%v), want %s", strings.TrimSpace(head), err, m.commit)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "README")); err != nil || string(b) != readme {
		t.Errorf("the clone's README: %q, %v", b, err)
	}
}

const pythonRequests = `
import os, sys, requests
r = requests.get(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["UPSTREAM_TOKEN"]}, timeout=20)
print(r.status_code)
print(r.text)
sys.exit(0 if r.status_code == 200 else 1)
`

func (m *matrix) testPythonRequests(t *testing.T) {
	m.tools.need(t, m.tools.requests, "python3 with requests ("+pythonBin+")", "python3-requests")
	m.row(t, "Python requests", firstLine(pythonBin, "-c", "import requests, platform; print('requests', requests.__version__, 'on Python', platform.python_version())"),
		"nothing: HTTPS_PROXY and REQUESTS_CA_BUNDLE from the env")
	m.bearer(t, "/python-requests", pythonBin, "-c", pythonRequests, m.up.url("/python-requests"))
}

const pythonUrllib = `
import os, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["UPSTREAM_TOKEN"]})
with urllib.request.urlopen(req, timeout=20) as r:
    print(r.status)
    print(r.read().decode())
`

func (m *matrix) testPythonUrllib(t *testing.T) {
	m.tools.need(t, m.tools.python != "", pythonBin, "python3")
	m.row(t, "Python urllib.request", firstLine(pythonBin, "-c", "import platform; print('Python', platform.python_version())"),
		"nothing: https_proxy from the env, SSL_CERT_FILE read by OpenSSL")
	m.bearer(t, "/python-urllib", pythonBin, "-c", pythonUrllib, m.up.url("/python-urllib"))
}

// testNodeFetch runs Node's global fetch. Node >= 22.21 or >= 24 honours
// HTTPS_PROXY itself with NODE_USE_ENV_PROXY=1 (in the sandbox env); Node
// 20's does not, so there fetch.mjs makes undici's EnvHttpProxyAgent (the
// npm package, pinned by package-lock.json, installed with npm ci) the
// global dispatcher first. NODE_EXTRA_CA_CERTS adds the bundle either way.
func (m *matrix) testNodeFetch(t *testing.T) {
	m.tools.need(t, m.tools.node != "", "node", "nodejs")
	version := "Node " + firstLine(m.tools.node, "--version")
	mode, needed := "env", "NODE_USE_ENV_PROXY=1 and NODE_EXTRA_CA_CERTS from the env"
	if !m.tools.nodeEnvProxy() {
		mode = "undici"
		pinned, err := pinnedUndici()
		if err != nil {
			t.Fatal(err)
		}
		if !undiciInstalled() {
			m.tools.need(t, m.tools.npm != "", "npm (for undici "+pinned+")", "npm")
			npmCI(t, m.tools.npm)
		}
		version += ", undici " + installedUndici()
		needed = "undici's EnvHttpProxyAgent as the global dispatcher (Node < 22.21 ignores HTTPS_PROXY in fetch); NODE_EXTRA_CA_CERTS from the env"
	}
	m.row(t, "Node global fetch", version, needed)
	script, err := filepath.Abs("fetch.mjs")
	if err != nil {
		t.Fatal(err)
	}
	m.bearer(t, "/node-fetch", m.tools.node, script, m.up.url("/node-fetch"), mode)
}

// npmCI installs the pinned undici into node_modules here.
func npmCI(t *testing.T, npm string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("npm ci (for undici) failed: %v\n%s\nrun `%s` where npm can reach its registry", err, tail(string(out), 2000), runAsRoot)
		}
		t.Fatalf("npm ci (for undici) failed: %v\n%s", err, tail(string(out), 2000))
	}
	t.Logf("npm ci installed undici %s in %s", installedUndici(), time.Since(start).Round(time.Millisecond))
}

func (m *matrix) testGoNetHTTP(t *testing.T) {
	m.row(t, "Go net/http", runtime.Version(), "nothing: http.ProxyFromEnvironment (the default transport) and SSL_CERT_FILE")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m.bearer(t, "/go-net-http", self, goClientArg, m.up.url("/go-net-http"))
}

// goClient is the Go client, run as a child of the test binary with only
// the sandbox env: one GET with the default transport.
func goClient(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage:", goClientArg, "URL")
		return 2
	}
	req, err := http.NewRequest(http.MethodGet, args[0], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv(secretName))
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	fmt.Printf("%d\n%s\n", resp.StatusCode, b)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

// bearer runs a client that sends GET path with Authorization: Bearer and
// the placeholder, and checks what arrived.
func (m *matrix) bearer(t *testing.T, path, name string, args ...string) {
	t.Helper()
	mark, logMark := m.up.mark(), m.e.stderr.Len()
	out, err := m.run(t, name, args...)
	m.checkBearer(t, path, mark, logMark, out, err)
}

// checkBearer checks that exactly one request for path arrived, with the
// real value, that the client succeeded and printed the upstream's answer,
// and that the output never holds the real value.
func (m *matrix) checkBearer(t *testing.T, path string, mark, logMark int, out string, err error) {
	t.Helper()
	got := m.up.since(mark)
	var hits []arrival
	for _, a := range got {
		if a.Path == path {
			hits = append(hits, a)
		}
	}
	ok := len(hits) == 1 && hits[0].Method == http.MethodGet && hits[0].Authorization == "Bearer "+m.real
	switch {
	case err != nil:
		t.Errorf("the client failed: %v", err)
	case !ok:
		t.Errorf("want one GET %s with Authorization: Bearer <real value> upstream", path)
	case !strings.Contains(out, `"path":"`+path+`"`):
		t.Errorf("the client's output lacks the upstream's answer")
	}
	if strings.Contains(out, m.real) {
		t.Errorf("the client's output holds the real value")
	}
	if t.Failed() {
		m.explain(t, got, logMark, out)
	}
}

// checkGit checks a git command's traffic: it succeeded, the Basic
// credentials upstream carried the real value (never the placeholder), and
// its output never holds the real value.
func (m *matrix) checkGit(t *testing.T, mark, logMark int, out string, err error) {
	t.Helper()
	got := m.up.since(mark)
	challenged, authed := 0, 0
	for _, a := range got {
		if !strings.HasPrefix(a.Path, "/repo.git/") {
			continue
		}
		if a.Authorization == "" {
			challenged++
			continue
		}
		user, pass, ok := (&http.Request{Header: http.Header{"Authorization": {a.Authorization}}}).BasicAuth()
		if !ok || user != "x-access-token" || pass != m.real {
			t.Errorf("%s %s arrived with Authorization %s, want Basic x-access-token:<real value>", a.Method, a.Path, m.describe(a.Authorization))
			continue
		}
		authed++
	}
	t.Logf("egressd: %d CONNECT(s) without credentials (answered 407); upstream: %d git request(s) without credentials (answered 401), %d with the real value", m.challenges(logMark), challenged, authed)
	if err != nil {
		t.Errorf("git failed: %v", err)
	} else if authed == 0 {
		t.Errorf("no git request arrived with the real value")
	}
	if strings.Contains(out, m.real) {
		t.Errorf("git's output holds the real value")
	}
	if t.Failed() {
		m.explain(t, got, logMark, out)
	}
}

// explain logs what a failed client did: its output, what arrived upstream
// and what egressd logged meanwhile (egressd's log never holds a value;
// the test's values are masked all the same).
func (m *matrix) explain(t *testing.T, got []arrival, logMark int, out string) {
	t.Helper()
	var up []string
	for _, a := range got {
		up = append(up, fmt.Sprintf("  %s %s Authorization: %s", a.Method, a.Path, m.describe(a.Authorization)))
	}
	t.Logf("client output:\n%s\nupstream received %d request(s):\n%s\negressd's log meanwhile:\n%s",
		m.redact(out), len(got), strings.Join(up, "\n"), m.redact(m.e.stderr.String()[logMark:]))
}

// describe shows an Authorization header with the test's values named.
func (m *matrix) describe(auth string) string {
	if auth == "" {
		return "(none)"
	}
	if scheme, cred, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Basic") {
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
			return "Basic base64(" + m.redact(string(dec)) + ")"
		}
	}
	return m.redact(auth)
}

func (m *matrix) redact(s string) string {
	var pairs []string
	if m.real != "" {
		pairs = append(pairs, m.real, "<real value>")
	}
	if m.placeholder != "" {
		pairs = append(pairs, m.placeholder, "<placeholder>")
	}
	if m.sbx.ProxyToken != "" {
		pairs = append(pairs, m.sbx.ProxyToken, "<proxy-token>")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func (m *matrix) hostPort() string {
	return net.JoinHostPort(upstreamHost, fmt.Sprint(m.up.port))
}

// run runs a client with the sandbox env (plus PATH and HOME) in HOME.
func (m *matrix) run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	return m.runEnv(t, m.env, name, args...)
}

// runEnv runs a client with env, its output combined, in a session of its
// own (no terminal to prompt on), for at most 45s.
func (m *matrix) runEnv(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = m.home
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("did not finish within 45s: %w", err)
	}
	return string(out), err
}

const readme = "the client matrix's repository\n"

// makeRepo makes root/repo.git, a bare repository with one commit on main,
// and returns the commit.
func makeRepo(t *testing.T, gitPath, root, home string) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	for _, d := range []string{work, root, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "README"), []byte(readme), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=clientmatrix", "GIT_AUTHOR_EMAIL=clientmatrix@example.com",
		"GIT_COMMITTER_NAME=clientmatrix", "GIT_COMMITTER_EMAIL=clientmatrix@example.com"}
	git := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, gitPath, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main", work)
	git("-C", work, "add", "README")
	git("-C", work, "commit", "-q", "-m", "first")
	git("clone", "-q", "--bare", work, filepath.Join(root, "repo.git"))
	return git("-C", work, "rev-parse", "HEAD")
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
