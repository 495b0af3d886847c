package golden

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/egressd/egressd/proxy"
)

// Diff compares what happened with what c expects. Each difference is one
// line naming the field, with values and placeholders written as tokens.
func Diff(c *Case, res *Result) ([]string, error) {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	z := res.Z
	r := &expander{c: c, z: z}
	if u := c.Upstream; u != nil {
		switch {
		case u.None && len(res.Upstream) > 0:
			s := res.Upstream[0]
			add("upstream: got %s %s, want nothing", s.Method, z.Tokens(s.URI))
		case !u.None && len(res.Upstream) == 0:
			add("upstream: got nothing, want %s %s", u.Method, u.URI)
		case !u.None:
			if len(res.Upstream) > 1 {
				add("upstream: got %d requests, want 1", len(res.Upstream))
			}
			s := res.Upstream[0]
			if s.Method != u.Method {
				add("upstream method: got %s, want %s", s.Method, u.Method)
			}
			if want, err := r.expand(u.URI); err != nil {
				return nil, err
			} else if s.URI != want {
				add("upstream request-URI: got %s, want %s", z.Tokens(s.URI), u.URI)
			}
			for _, h := range u.Headers {
				want, err := r.expand(h[1])
				if err != nil {
					return nil, err
				}
				got, present := headerValue(s, h[0])
				switch {
				case !present:
					add("upstream header %s: absent, want %s", h[0], h[1])
				case got != want:
					add("upstream header %s: got %s, want %s", h[0], z.Header(got), h[1])
				}
			}
			for _, name := range u.Absent {
				if got, present := headerValue(s, name); present {
					add("upstream header %s: got %s, want absent", name, z.Header(got))
				}
			}
			want, err := r.expand(u.Body)
			if err != nil {
				return nil, err
			}
			want = strings.ReplaceAll(want, chunkMark, "")
			if string(s.Body) != want {
				add("upstream body: %s", bodyDiff(z, string(s.Body), want))
			}
		}
	}
	if e := c.Response; e != nil {
		if res.Status != e.Status {
			add("response status: got %d, want %d", res.Status, e.Status)
		}
		if res.Closed != e.Closed {
			add("response: TLS handshake closed with %q, want %q", res.Closed, e.Closed)
		}
		if got := res.Header.Get("X-Egress-Denied"); got != e.Denied {
			add("response X-Egress-Denied: got %q, want %q", got, e.Denied)
		}
		for _, s := range e.Contains {
			want, err := r.expand(s)
			if err != nil {
				return nil, err
			}
			if !strings.Contains(string(res.Body), want) {
				add("response body: lacks %s; got %s", s, clip(z.Tokens(string(res.Body)), 300))
			}
		}
		for _, s := range e.Lacks {
			want, err := r.expand(s)
			if err != nil {
				return nil, err
			}
			if strings.Contains(string(res.Body), want) || strings.Contains(strings.Join(res.Header.Values("X-Echo"), "\n"), want) {
				add("response: holds %s, want it absent; body %s", s, clip(z.Tokens(string(res.Body)), 300))
			}
		}
	}
	if a := c.Audit; a != nil {
		switch {
		case a.None && res.Event != nil:
			add("audit: got an event (outcome %s, reason %q), want none", res.Event.Outcome, res.Event.Reason)
		case !a.None && res.Event == nil:
			add("audit: got no event")
		case !a.None:
			got := auditFieldsOf(res)
			for _, f := range a.Fields {
				if g := got[f[0]]; g != f[1] {
					add("audit %s: got %q, want %q", f[0], g, f[1])
				}
			}
			gu, wu := usesOf(res.Event), slices.Clone(a.Uses)
			slices.Sort(wu)
			for _, u := range gu {
				if i := slices.Index(wu, u); i >= 0 {
					wu = slices.Delete(wu, i, i+1)
				} else {
					add("audit use: got %q, not expected", u)
				}
			}
			for _, u := range wu {
				add("audit use: missing %q", u)
			}
		}
	}
	return d, nil
}

// headerValue returns a header's values as one string (joined with ", ").
func headerValue(s Seen, name string) (string, bool) {
	if strings.EqualFold(name, "Host") {
		return s.Host, true
	}
	v, ok := s.Header[http.CanonicalHeaderKey(name)]
	return strings.Join(v, ", "), ok
}

// bodyDiff says where two bodies part, as tokens.
func bodyDiff(z *Tokenizer, got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-40)
	if len(got) < 400 && len(want) < 400 {
		return fmt.Sprintf("got %s, want %s", strconv.Quote(z.Tokens(got)), strconv.Quote(z.Tokens(want)))
	}
	return fmt.Sprintf("%d bytes, want %d; they part at byte %d: got …%s…, want …%s…", len(got), len(want), i,
		strconv.Quote(z.Tokens(got[from:min(len(got), i+80)])), strconv.Quote(z.Tokens(want[from:min(len(want), i+80)])))
}

func auditFieldsOf(res *Result) map[string]string {
	ev := res.Event
	sbx := res.sandboxName[ev.SandboxID]
	if sbx == "" && ev.SandboxID != "" {
		sbx = "?" + ev.SandboxID
	}
	return map[string]string{
		"outcome": string(ev.Outcome), "reason": ev.Reason, "status": strconv.Itoa(ev.Status),
		"sandbox": sbx, "method": ev.Method, "host": ev.Host, "path": res.Z.Tokens(ev.Path),
	}
}

// usesOf writes each use as "LOCATION ACTION name=… level=… version=…
// reason=… [leak]", sorted.
func usesOf(ev *proxy.Event) []string {
	var out []string
	for _, u := range ev.Uses {
		f := []string{string(u.Location), string(u.Action)}
		for _, kv := range [][2]string{{"name", u.Name}, {"level", u.Level}, {"reason", u.Reason}} {
			if kv[1] != "" {
				f = append(f, kv[0]+"="+kv[1])
			}
		}
		if u.Version != 0 {
			f = append(f, "version="+strconv.Itoa(u.Version))
		}
		if u.Leak {
			f = append(f, "leak")
		}
		out = append(out, strings.Join(f, " "))
	}
	if ev.UsesDropped > 0 {
		out = append(out, fmt.Sprintf("dropped %d", ev.UsesDropped))
	}
	slices.Sort(out)
	return out
}

// expander expands expectations once the run has issued its placeholders.
type expander struct {
	c *Case
	z *Tokenizer
}

func (e *expander) expand(s string) (string, error) {
	return Expand(s, e)
}

// Placeholder finds the placeholder the run issued, by its token.
func (e *expander) Placeholder(sbx, name string) (string, error) {
	return e.lookup("{{placeholder " + sbx + " " + name + "}}")
}

// Value finds a secret's value by its token.
func (e *expander) Value(label string, version int) (string, error) {
	sec := e.c.Setup.secret(label)
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

func (e *expander) lookup(token string) (string, error) {
	for _, p := range e.z.pairs {
		if p[1] == token {
			return p[0], nil
		}
	}
	return "", fmt.Errorf("%s was never issued in this run", token)
}
