package api

import (
	"net"
	"net/http"
	"strings"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// ProxyTokenPlaceholder stands in the password slot of the proxy variables
// that GET .../env returns: the token was shown once, at creation.
const ProxyTokenPlaceholder = "<proxy-token>"

// An EnvVar is one variable of a sandbox's env that egressd sets beside the
// placeholders, with the clients that read it.
type EnvVar struct {
	Name    string
	Readers string
}

// ProxyVars send a sandbox's traffic through the proxy; both spellings,
// since clients disagree on which they read.
var ProxyVars = []EnvVar{
	{"HTTPS_PROXY", "curl and libcurl (git, PHP), Python requests and urllib, Go net/http, Node >= 22.21 with NODE_USE_ENV_PROXY, undici's EnvHttpProxyAgent, Deno, cargo, pip, the AWS SDKs"},
	{"https_proxy", "the same clients; curl and wget read only the lower-case form for http"},
	{"HTTP_PROXY", "plain-http requests of the same clients (curl ignores the upper-case form)"},
	{"http_proxy", "plain-http requests: curl, wget, Python, Go"},
}

// NoProxyVars keep loopback traffic (and the operator's entries) off the proxy.
var NoProxyVars = []EnvVar{
	{"NO_PROXY", "the clients that read HTTPS_PROXY"},
	{"no_proxy", "curl, wget, Python, Go (lower case wins where both are set)"},
}

// NodeProxyVar makes Node's built-in fetch and https honour the proxy
// variables (Node >= 22.21 and 24; Node 20 ignores it).
var NodeProxyVar = EnvVar{"NODE_USE_ENV_PROXY", "Node >= 22.21 / 24: built-in fetch, http and https use HTTPS_PROXY and NO_PROXY"}

// CATrustVars are the variables common clients read to find the CA bundle
// they trust. All but NODE_EXTRA_CA_CERTS replace the system roots, so the
// bundle at the path should hold egressd's CA merged with them (GET
// /api/v1/ca.pem?bundle=system).
var CATrustVars = []EnvVar{
	{"SSL_CERT_FILE", "OpenSSL (curl builds on it, Ruby, PHP), Go crypto/x509, Python's ssl and urllib"},
	{"REQUESTS_CA_BUNDLE", "Python requests"},
	{"CURL_CA_BUNDLE", "curl, Python requests (when REQUESTS_CA_BUNDLE is unset)"},
	{"NODE_EXTRA_CA_CERTS", "Node (appended to its built-in roots)"},
	{"NPM_CONFIG_CAFILE", "npm"},
	{"DENO_CERT", "Deno"},
	{"PIP_CERT", "pip"},
	{"GIT_SSL_CAINFO", "git over https"},
	{"CARGO_HTTP_CAINFO", "cargo"},
	{"AWS_CA_BUNDLE", "the AWS CLI and SDKs"},
	{"HEX_CACERTS_PATH", "Elixir's hex and mix"},
}

// defaultNoProxy are always in a sandbox's NO_PROXY: loopback stays inside
// the sandbox.
var defaultNoProxy = []string{"localhost", "127.0.0.1", "::1"}

// SandboxEnv is the answer of GET /api/v1/sandboxes/{id}/env: the env a
// sandbox should run with, as of now.
type SandboxEnv struct {
	SandboxID    string             `json:"sandbox_id"`
	ResourceType vault.ResourceType `json:"resource_type"`
	// Env maps each env var to its value: placeholders, the proxy
	// variables and the CA-trust variables.
	Env map[string]string `json:"env"`
	// Placeholders lists, for every secret name that resolves for the
	// sandbox now, its env var, placeholder, secret id and level.
	Placeholders []resolver.EnvEntry `json:"placeholders"`
	// ProxyURL is the proxy with the sandbox's credentials.
	ProxyURL string `json:"proxy_url"`
	// ProxyTokenOmitted says that ProxyURL and the proxy variables carry
	// ProxyTokenPlaceholder instead of the token, which was shown once.
	ProxyTokenOmitted bool   `json:"proxy_token_omitted"`
	Note              string `json:"note,omitempty"`
	CACertPEM         string `json:"ca_cert_pem"`
	CABundlePath      string `json:"ca_bundle_path"`
}

// sandboxEnv answers the env of a sandbox without its proxy token.
func (s *Server) sandboxEnv(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		sbx, err := s.resourceFor(p, r.PathValue("id"), rt)
		if err != nil {
			return err
		}
		out, err := s.envOf(r, p, &sbx, "")
		if err != nil {
			return err
		}
		f, err := envFormatOf(r)
		if err != nil {
			return err
		}
		if f == formatJSON {
			writeJSON(w, http.StatusOK, out)
			return nil
		}
		writeEnv(w, http.StatusOK, f, sbx.ID, out.Env)
		return nil
	}
}

// envOf builds a sandbox's env. An empty token puts ProxyTokenPlaceholder
// where the token goes.
func (s *Server) envOf(r *http.Request, p *principal, sbx *vault.Sandbox, token string) (SandboxEnv, error) {
	entries, err := s.resolver.Env(r.Context(), p.tenant(), sbx.ID)
	if err != nil {
		return SandboxEnv{}, err
	}
	t, err := s.store.Tenant(p.tenant())
	if err != nil {
		return SandboxEnv{}, err
	}
	caPath := s.caPath
	if t.Settings.CABundlePath != "" {
		caPath = t.Settings.CABundlePath
	}
	out := SandboxEnv{
		SandboxID: sbx.ID, ResourceType: sbx.ResourceType,
		Env: make(map[string]string, len(entries)+len(ProxyVars)+len(NoProxyVars)+len(CATrustVars)+1), Placeholders: entries,
		CACertPEM: s.caPEM, CABundlePath: caPath,
	}
	if token == "" {
		token = ProxyTokenPlaceholder
		out.ProxyTokenOmitted = true
		out.Note = "the proxy token is shown only when the sandbox is created; put it where " + ProxyTokenPlaceholder + " stands"
	}
	for _, e := range entries {
		out.Env[e.Env] = e.Placeholder
	}
	// The proxy and CA variables win over a secret exposed under the same
	// name: traffic that bypassed the proxy would carry placeholders only.
	out.ProxyURL = s.proxyURL(sbx.ID, token)
	for _, v := range ProxyVars {
		out.Env[v.Name] = out.ProxyURL
	}
	for _, v := range NoProxyVars {
		out.Env[v.Name] = s.noProxy
	}
	out.Env[NodeProxyVar.Name] = "1"
	for _, v := range CATrustVars {
		out.Env[v.Name] = caPath
	}
	return out, nil
}

// proxyURL is the proxy's base URL with the sandbox's credentials. It is
// built by hand so that ProxyTokenPlaceholder stays readable (ids and
// tokens are [A-Za-z0-9_] and need no escaping).
func (s *Server) proxyURL(id, token string) string {
	return s.proxy.Scheme + "://" + id + ":" + token + "@" + s.proxy.Host
}

// explain shows the six-level walk for one name of a sandbox, with ?host=
// checked against the matched secret's allowed_hosts. The name is a
// secret's name or the env var it is exposed as. Never a value.
func (s *Server) explain(rt vault.ResourceType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		sbx, err := s.resourceFor(p, r.PathValue("id"), rt)
		if err != nil {
			return err
		}
		name := r.PathValue("name")
		if !vault.ValidName(name) && !vault.ValidEnvName(name) {
			return errorf(ErrBadRequest, "name: must match [A-Za-z0-9_.-]{1,128} (a secret's name, or the env var it is exposed as)")
		}
		host, err := explainHost(r.URL.Query().Get("host"))
		if err != nil {
			return err
		}
		ex, err := s.resolver.ExplainAny(r.Context(), p.tenant(), sbx.ID, name, host)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, ex)
		return nil
	}
}

// explainHost checks the optional ?host= of explain: a host name or IP
// address, with or without a port.
func explainHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	n, ok := vault.NormalizeHostPattern(strings.Trim(h, "[]"))
	if !ok || strings.HasPrefix(n, "*") {
		return "", errorf(ErrBadRequest, "host: want a host name or IP address")
	}
	return n, nil
}
