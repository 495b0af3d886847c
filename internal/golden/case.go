package golden

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Case is one golden file.
type Case struct {
	Name     string
	Path     string
	Archive  *Archive
	Setup    *Setup
	Request  *Request
	Upstream *UpstreamExpect // nil: not checked
	Response *ResponseExpect // nil: not checked
	Audit    *AuditExpect    // nil: not checked
}

// Request is the "request" section: directives in leading "# key: value"
// lines, then the raw request.
type Request struct {
	// Sandbox is the local name of the sandbox that sends it ("# sandbox:").
	Sandbox string
	// ProxyAuth is "ok" (default), "none" or "bad" ("# proxy-auth:").
	ProxyAuth string
	// Mode is "tls" (default: CONNECT, then TLS to egressd's leaf) or
	// "plain" (an absolute-form request to the proxy) ("# mode:").
	Mode string
	// Connect overrides the CONNECT host; default the Host header ("# connect:").
	Connect string
	// SNI is the server name of the TLS ClientHello; default the CONNECT
	// host ("# sni:").
	SNI string
	// Gzip compresses the body before sending ("# body: gzip").
	Gzip bool
	// Head is the request line and header lines; Body what follows the
	// blank line, less the file's final newline. Both unexpanded.
	Head []string
	Body string
}

// UpstreamExpect is the "upstream" section.
type UpstreamExpect struct {
	// None: the upstream must receive nothing (the section says "none").
	None   bool
	Method string
	URI    string
	// Headers are compared by name; only these and Absent are checked.
	Headers [][2]string
	Absent  []string
	// Echo tells the recording upstream what to send back: "header NAME"
	// (its value, in the body and in X-Echo) or "body" (the body, as JSON);
	// and how: "gzip" compresses the answer's body (once per line),
	// "content-encoding VALUE" adds a Content-Encoding line as written
	// (one per line, in order); "websocket" accepts a WebSocket handshake
	// and sends the echo as frames (websocket.go).
	Echo []string
	Body string
}

// ResponseExpect is the "response" section.
type ResponseExpect struct {
	Status int
	// Denied is X-Egress-Denied; empty means the header must be absent.
	Denied   string
	Contains []string
	Lacks    []string
	// Closed is what the sandbox's TLS client reported when egressd closed
	// the tunnel instead of completing the handshake ("closed:"); empty
	// means the handshake must complete.
	Closed string
}

// AuditExpect is the "audit" section: the final audit event.
type AuditExpect struct {
	// None: no final event (the section says "none").
	None bool
	// Fields are the scalar fields listed (outcome, reason, status,
	// sandbox, method, host, path), in file order.
	Fields [][2]string
	// Uses are the use lines, each "LOCATION ACTION key=value… [leak]".
	Uses []string
}

// LoadDir reads every *.txtar file of dir, sorted by name.
func LoadDir(dir string) ([]*Case, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txtar"))
	if err != nil {
		return nil, err
	}
	var cases []*Case
	for _, f := range files {
		c, err := LoadFile(f)
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// LoadFile reads one case.
func LoadFile(path string) (*Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(strings.TrimSuffix(filepath.Base(path), ".txtar"), data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse reads a case from its file form.
func Parse(name string, data []byte) (*Case, error) {
	a := ParseArchive(data)
	c := &Case{Name: name, Archive: a}
	for _, s := range a.Sections {
		switch s.Name {
		case "setup", "request", "upstream", "response", "audit":
		default:
			return nil, fmt.Errorf("unknown section %q", s.Name)
		}
	}
	setup, ok := a.Get("setup")
	if !ok {
		return nil, fmt.Errorf("no setup section")
	}
	var err error
	if c.Setup, err = parseSetup(setup); err != nil {
		return nil, err
	}
	req, ok := a.Get("request")
	if !ok {
		return nil, fmt.Errorf("no request section")
	}
	if c.Request, err = parseRequest(string(req)); err != nil {
		return nil, err
	}
	if c.Request.Sandbox != "" {
		if _, ok := c.Setup.Sandboxes[c.Request.Sandbox]; !ok {
			return nil, fmt.Errorf("request: unknown sandbox %q", c.Request.Sandbox)
		}
	}
	if d, ok := a.Get("upstream"); ok {
		if c.Upstream, err = parseUpstream(string(d)); err != nil {
			return nil, err
		}
	}
	if d, ok := a.Get("response"); ok {
		if c.Response, err = parseResponse(string(d)); err != nil {
			return nil, err
		}
	}
	if d, ok := a.Get("audit"); ok {
		if c.Audit, err = parseAudit(string(d)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// splitHeadBody splits at the first empty line; the body loses the
// section's final newline.
func splitHeadBody(s string) (head []string, body string, hasBody bool) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	h, b, found := strings.Cut(s, "\n\n")
	if !found {
		h = strings.TrimSuffix(s, "\n")
	} else {
		body = strings.TrimSuffix(b, "\n")
	}
	if h != "" {
		head = strings.Split(h, "\n")
	}
	return head, body, found
}

func parseRequest(s string) (*Request, error) {
	r := &Request{ProxyAuth: "ok", Mode: "tls"}
	for strings.HasPrefix(s, "#") {
		line, rest, _ := strings.Cut(s, "\n")
		s = rest
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":")
		if !ok {
			continue // a plain comment
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "sandbox":
			r.Sandbox = v
		case "proxy-auth":
			r.ProxyAuth = v
		case "mode":
			r.Mode = v
		case "sni":
			r.SNI = v
		case "connect":
			r.Connect = v
		case "body":
			if v != "gzip" {
				return nil, fmt.Errorf("request: unknown body directive %q", v)
			}
			r.Gzip = true
		default:
			return nil, fmt.Errorf("request: unknown directive %q", k)
		}
	}
	switch {
	case r.ProxyAuth != "ok" && r.ProxyAuth != "none" && r.ProxyAuth != "bad":
		return nil, fmt.Errorf("request: proxy-auth must be ok, none or bad")
	case r.Mode != "tls" && r.Mode != "plain":
		return nil, fmt.Errorf("request: mode must be tls or plain")
	case r.Sandbox == "" && r.ProxyAuth == "ok":
		return nil, fmt.Errorf("request: no \"# sandbox:\" line")
	}
	r.Head, r.Body, _ = splitHeadBody(s)
	if len(r.Head) == 0 || !strings.Contains(r.Head[0], " ") || !strings.HasPrefix(r.Head[0][strings.LastIndexByte(r.Head[0], ' ')+1:], "HTTP/1.") {
		return nil, fmt.Errorf("request: first line must be METHOD TARGET HTTP/1.1")
	}
	return r, nil
}

func parseUpstream(s string) (*UpstreamExpect, error) {
	if strings.TrimSpace(s) == "none" {
		return &UpstreamExpect{None: true}, nil
	}
	head, body, _ := splitHeadBody(s)
	u := &UpstreamExpect{Body: body}
	if len(head) == 0 {
		return nil, fmt.Errorf("upstream: first line must be METHOD REQUEST-URI, or none")
	}
	m, uri, ok := strings.Cut(head[0], " ")
	if !ok || m == "" || uri == "" {
		return nil, fmt.Errorf("upstream: first line must be METHOD REQUEST-URI, not %q", head[0])
	}
	u.Method, u.URI = m, uri
	for _, line := range head[1:] {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("upstream: %q is not NAME: VALUE", line)
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "absent":
			u.Absent = append(u.Absent, v)
		case "echo":
			if v != "body" && v != "gzip" && v != wsEcho && !strings.HasPrefix(v, "header ") && !strings.HasPrefix(v, "content-encoding ") {
				return nil, fmt.Errorf("upstream: echo must be \"header NAME\", \"body\", \"gzip\", \"content-encoding VALUE\" or \"websocket\"")
			}
			u.Echo = append(u.Echo, v)
		default:
			u.Headers = append(u.Headers, [2]string{k, v})
		}
	}
	return u, nil
}

func parseResponse(s string) (*ResponseExpect, error) {
	r := &ResponseExpect{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("response: %q is not KEY: VALUE", line)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "status":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("response: status %q", v)
			}
			r.Status = n
		case "closed":
			r.Closed = v
		case "denied":
			r.Denied = v
		case "contains":
			r.Contains = append(r.Contains, v)
		case "lacks":
			r.Lacks = append(r.Lacks, v)
		default:
			return nil, fmt.Errorf("response: unknown key %q", k)
		}
	}
	return r, nil
}

var auditFields = []string{"outcome", "reason", "status", "sandbox", "method", "host", "path"}

func parseAudit(s string) (*AuditExpect, error) {
	if strings.TrimSpace(s) == "none" {
		return &AuditExpect{None: true}, nil
	}
	a := &AuditExpect{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("audit: %q is not KEY: VALUE", line)
		}
		v = strings.Join(strings.Fields(v), " ")
		if k == "use" {
			a.Uses = append(a.Uses, v)
			continue
		}
		known := false
		for _, f := range auditFields {
			known = known || f == k
		}
		if !known {
			return nil, fmt.Errorf("audit: unknown field %q (want one of %v or use)", k, auditFields)
		}
		a.Fields = append(a.Fields, [2]string{k, v})
	}
	return a, nil
}
