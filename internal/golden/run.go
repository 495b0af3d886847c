package golden

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/vault"
)

// Result is what happened when a case was replayed.
type Result struct {
	// Upstream is every request the upstream received.
	Upstream []Seen
	Status   int
	Header   http.Header
	Body     []byte
	// Closed is the TLS client's error when egressd closed the tunnel
	// instead of completing the handshake (Status is then the CONNECT's).
	Closed string
	// Event is the final audit event, nil if none came.
	Event *proxy.Event
	// Z writes values and placeholders of this run as tokens.
	Z *Tokenizer
	// sandboxName maps sandbox ids to local names.
	sandboxName map[string]string
}

// runner replays one case against a session of a Target.
type runner struct {
	c      *Case
	s      session
	sbx    map[string]string // local name -> sandbox id
	tokens map[string]string
	phs    map[[2]string]string
	z      *Tokenizer
	update bool
}

// Run replays c through a fresh in-process proxy whose data lives in dir.
// With update set it waits the full time for an audit event that the case
// says will not come.
func Run(c *Case, dir string, update bool) (*Result, error) {
	return RunOn(LocalTarget{Dir: dir}, c, update)
}

// RunOn replays c against t. A case t cannot run fails with a *Skip.
func RunOn(t Target, c *Case, update bool) (*Result, error) {
	s, err := t.open(c)
	if err != nil {
		return nil, err
	}
	defer s.close()
	r := &runner{c: c, s: s, update: update, sbx: map[string]string{}, tokens: map[string]string{}, phs: map[[2]string]string{}, z: &Tokenizer{}}
	if err := r.setup(); err != nil {
		return nil, err
	}
	return r.replay()
}

func (r *runner) setup() error {
	s := r.c.Setup
	names := make([]string, 0, len(s.Sandboxes))
	for n := range s.Sandboxes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		in := s.Sandboxes[n]
		if in.Name == "" {
			in.Name = n
		}
		id, token, err := r.s.createSandbox(in)
		if err != nil {
			return fmt.Errorf("setup: sandbox %s: %w", n, err)
		}
		r.sbx[n], r.tokens[n] = id, token
	}
	ids := map[string]string{}
	for _, sec := range s.Secrets {
		in := vault.SecretInput{
			Name: sec.Name, Value: sec.Value, Scope: sec.Scope,
			OwnerUserID: sec.OwnerUserID, WorkspaceID: sec.WorkspaceID,
			ExternalUserID: sec.ExternalUserID, ExternalWorkspaceID: sec.ExternalWorkspaceID,
			ExposeAsEnv: sec.ExposeAsEnv, AllowedHosts: sec.AllowedHosts, SubstituteIn: sec.SubstituteIn,
			PlaceholderPrefix: sec.PlaceholderPrefix,
		}
		if sec.Sandbox != "" {
			in.ResourceID, in.ResourceType = r.sbx[sec.Sandbox], vault.ResourceSandbox
		}
		// Its values are tokens even when it is refused: one that turns
		// up anyway shows as {{value LABEL}}, never verbatim.
		r.valueTokens(&sec)
		id, err := r.s.upsertSecret(in)
		if sec.Refused != "" {
			if err := refusedFor(err, sec.Refused); err != nil {
				return fmt.Errorf("setup: secret %s: %w", sec.label(), err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("setup: secret %s: %w", sec.label(), err)
		}
		ids[sec.label()] = id
		for i, v := range sec.Rotations {
			if err := r.s.rotateSecret(id, v); err != nil {
				return fmt.Errorf("setup: secret %s rotation %d: %w", sec.label(), i+1, err)
			}
		}
		if sec.Disabled {
			if err := r.s.disableSecret(id); err != nil {
				return fmt.Errorf("setup: secret %s: disable: %w", sec.label(), err)
			}
		}
	}
	for _, b := range s.Bindings {
		if err := r.s.createBinding(vault.BindingInput{SecretID: ids[b.Secret], ResourceID: r.sbx[b.Sandbox], ResourceType: vault.ResourceSandbox, ExposeAsEnv: b.ExposeAsEnv}); err != nil {
			return fmt.Errorf("setup: binding %s to %s: %w", b.Secret, b.Sandbox, err)
		}
	}
	// Settings last: a tenant may turn allow_end_user_credentials off
	// after its end users stored secrets.
	if err := r.s.updateSettings(s.Tenant); err != nil {
		return fmt.Errorf("setup: tenant: %w", err)
	}
	// Issue every placeholder that resolves now, so that any of them shows
	// as a token wherever it turns up.
	for _, n := range names {
		env, err := r.s.env(r.sbx[n])
		if err != nil {
			return fmt.Errorf("setup: env of %s: %w", n, err)
		}
		for _, e := range env {
			r.phs[[2]string{n, e.Name}] = e.Placeholder
			r.z.Add(e.Placeholder, "{{placeholder "+n+" "+e.Name+"}}")
			r.z.Add(vault.PlaceholderCore(e.Placeholder), "{{placeholder "+n+" "+e.Name+" core}}")
		}
	}
	return nil
}

// valueTokens makes every version of sec's value (also URL-escaped) a
// token.
func (r *runner) valueTokens(sec *SecretSpec) {
	vals := sec.values()
	for i, v := range vals {
		tok := fmt.Sprintf("{{value %s v%d}}", sec.label(), i+1)
		if i == len(vals)-1 {
			tok = "{{value " + sec.label() + "}}"
		}
		r.z.Add(v, tok)
		r.z.Add(url.QueryEscape(v), strings.TrimSuffix(tok, "}}")+" query}}")
		r.z.Add(url.PathEscape(v), strings.TrimSuffix(tok, "}}")+" path}}")
	}
}

// refusedFor checks that err is a refusal of the secret's field: the
// vault's (a local target) or the API's 400 or 403 (an external one), whose
// message starts with the field.
func refusedFor(err error, field string) error {
	var ve *vault.ValidationError
	var ae *client.Error
	switch {
	case err == nil:
		return fmt.Errorf("stored, but the case expects it refused for %s", field)
	case errors.As(err, &ve) && ve.Field == field:
		return nil
	case errors.As(err, &ae) && (ae.Status == 400 || ae.Status == 403) && strings.HasPrefix(ae.Message, field+":"):
		return nil
	}
	return fmt.Errorf("refused, but not for %s: %w", field, err)
}

// Placeholder implements Tokens: the sandbox's placeholder for name,
// issued now if the name does not resolve for it (disabled, unknown).
func (r *runner) Placeholder(sbx, name string) (string, error) {
	if ph, ok := r.phs[[2]string{sbx, name}]; ok {
		return ph, nil
	}
	id, ok := r.sbx[sbx]
	if !ok {
		return "", fmt.Errorf("unknown sandbox %q", sbx)
	}
	prefix := ""
	for _, sec := range r.c.Setup.Secrets {
		if sec.Name == name {
			prefix = sec.PlaceholderPrefix
			break
		}
	}
	ph, err := r.s.ensurePlaceholder(id, name, prefix)
	if err != nil {
		return "", err
	}
	r.phs[[2]string{sbx, name}] = ph
	r.z.Add(ph, "{{placeholder "+sbx+" "+name+"}}")
	r.z.Add(vault.PlaceholderCore(ph), "{{placeholder "+sbx+" "+name+" core}}")
	return ph, nil
}

// Value implements Tokens.
func (r *runner) Value(label string, version int) (string, error) {
	sec := r.c.Setup.secret(label)
	if sec == nil {
		return "", fmt.Errorf("unknown secret %q", label)
	}
	vals := sec.values()
	if version == 0 {
		version = len(vals)
	}
	if version > len(vals) {
		return "", fmt.Errorf("secret %q has no version %d", label, version)
	}
	return vals[version-1], nil
}

// wire is a request ready to send: the head, and the body in the pieces
// it is written in.
type wire struct {
	head    []byte
	pieces  [][]byte
	chunked bool
	host    string // CONNECT host, without port
}

func (r *runner) build(port string) (*wire, error) {
	req := r.c.Request
	w := &wire{}
	body, err := Expand(req.Body, r)
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	var lines []string
	host := ""
	for i, line := range req.Head {
		line, err := Expand(line, r)
		if err != nil {
			return nil, fmt.Errorf("request: %w", err)
		}
		if strings.Contains(line, chunkMark) {
			return nil, fmt.Errorf("request: {{chunk}} only in the body")
		}
		if i == 0 {
			f := strings.Fields(line)
			if rest, ok := strings.CutPrefix(f[1], "http://"); ok {
				h, path, _ := strings.Cut(rest, "/")
				if !strings.Contains(h, ":") {
					h += ":" + port
				}
				f[1] = "http://" + h + "/" + path
			}
			lines = append(lines, strings.Join(f, " "))
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("request: %q is not NAME: VALUE", line)
		}
		switch strings.ToLower(k) {
		case "host":
			host = strings.TrimSpace(v)
			if _, _, err := net.SplitHostPort(host); err != nil {
				line = k + ": " + net.JoinHostPort(host, port)
			} else {
				host, _, _ = net.SplitHostPort(host)
			}
		case "content-length":
			continue // computed below
		case "transfer-encoding":
			w.chunked = strings.EqualFold(strings.TrimSpace(v), "chunked")
		}
		lines = append(lines, line)
	}
	if host == "" {
		return nil, fmt.Errorf("request: no Host header")
	}
	w.host = host
	if req.Connect != "" {
		w.host = req.Connect
	}
	if req.Gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write([]byte(strings.ReplaceAll(body, chunkMark, "")))
		zw.Close()
		body = zb.String()
	}
	for _, p := range strings.Split(body, chunkMark) {
		if p != "" {
			w.pieces = append(w.pieces, []byte(p))
		}
	}
	if !w.chunked && len(body) > 0 {
		lines = append(lines, fmt.Sprintf("Content-Length: %d", len(body)-strings.Count(body, chunkMark)*len(chunkMark)))
	}
	if req.Mode == "plain" && req.ProxyAuth != "none" {
		lines = append(lines, "Proxy-Authorization: "+r.proxyAuth())
	}
	w.head = []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
	return w, nil
}

func (r *runner) proxyAuth() string {
	req := r.c.Request
	id, token := r.sbx[req.Sandbox], r.tokens[req.Sandbox]
	if req.ProxyAuth == "bad" {
		if id == "" {
			id = "sbx_unknown"
		}
		token = "wrong-token"
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+token))
}

func (r *runner) replay() (*Result, error) {
	req := r.c.Request
	up := r.s.upstream()
	up.reset()
	if r.c.Upstream != nil {
		up.SetEcho(r.c.Upstream.Echo)
	}
	_, tlsPort, _ := net.SplitHostPort(up.TLS.Listener.Addr().String())
	_, plainPort, _ := net.SplitHostPort(up.Plain.Listener.Addr().String())
	port := tlsPort
	if req.Mode == "plain" {
		port = plainPort
	}
	w, err := r.build(port)
	if err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", r.s.proxyAddr())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	var rw io.ReadWriter = conn
	br := bufio.NewReader(conn)
	var resp *http.Response
	if req.Mode == "tls" {
		connect := "CONNECT " + net.JoinHostPort(w.host, port) + " HTTP/1.1\r\nHost: " + net.JoinHostPort(w.host, port) + "\r\n"
		if req.ProxyAuth != "none" {
			connect += "Proxy-Authorization: " + r.proxyAuth() + "\r\n"
		}
		if _, err := io.WriteString(conn, connect+"\r\n"); err != nil {
			return nil, err
		}
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return nil, fmt.Errorf("CONNECT: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return r.result(resp)
		}
		// roots hold egressd's CA and the upstream's: a tunnelled host
		// answers with its own certificate.
		sni := w.host
		if req.SNI != "" {
			sni = req.SNI
		}
		tc := tls.Client(conn, &tls.Config{ServerName: sni, RootCAs: r.s.roots(), NextProtos: []string{"http/1.1"}})
		if herr := tc.Handshake(); herr != nil {
			res, err := r.result(resp)
			if err != nil {
				return nil, err
			}
			res.Closed = herr.Error()
			return res, nil
		}
		rw, br = tc, bufio.NewReader(tc)
	}
	if err := send(rw, w); err != nil {
		return nil, err
	}
	method, _, _ := strings.Cut(string(w.head), " ")
	resp, err = http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body is the WebSocket's frames, as a transcript.
		resp.Body = io.NopCloser(bytes.NewReader(wsTranscript(br)))
	}
	return r.result(resp)
}

// send writes the head and each piece of the body in its own write, with
// a pause between them, so the proxy reads them apart.
func send(w io.Writer, wr *wire) error {
	if _, err := w.Write(wr.head); err != nil {
		return err
	}
	for i, p := range wr.pieces {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		if wr.chunked {
			p = append([]byte(fmt.Sprintf("%x\r\n", len(p))), append(p, "\r\n"...)...)
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	if wr.chunked {
		if _, err := io.WriteString(w, "0\r\n\r\n"); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) result(resp *http.Response) (*Result, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	res := &Result{Status: resp.StatusCode, Header: resp.Header, Body: body, Z: r.z, sandboxName: map[string]string{}}
	for n, id := range r.sbx {
		res.sandboxName[id] = n
	}
	none := r.c.Audit != nil && r.c.Audit.None && !r.update
	if res.Event, err = r.s.event(r.sbx[r.c.Request.Sandbox], none); err != nil {
		return nil, err
	}
	res.Upstream = r.s.upstream().Received()
	return res, nil
}
