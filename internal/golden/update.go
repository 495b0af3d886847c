package golden

import (
	"fmt"
	"net/http"
	"strings"
)

// Update rewrites c's expectation sections (upstream, response, audit)
// from what happened, keeping the headers each lists, its absent: and echo:
// lines and its contains/lacks lines, and returns the new file.
func Update(c *Case, res *Result) []byte {
	z := res.Z
	a := c.Archive
	// upstream
	var b strings.Builder
	if len(res.Upstream) == 0 {
		b.WriteString("none\n")
	} else {
		s := res.Upstream[0]
		fmt.Fprintf(&b, "%s %s\n", s.Method, z.Tokens(s.URI))
		var names, absent, echo []string
		if u := c.Upstream; u != nil && !u.None {
			for _, h := range u.Headers {
				names = append(names, h[0])
			}
			absent, echo = u.Absent, u.Echo
		} else {
			names = []string{"Host"}
		}
		for _, n := range names {
			if v, ok := headerValue(s, n); ok {
				fmt.Fprintf(&b, "%s: %s\n", n, z.Header(v))
			} else {
				absent = append(absent, n)
			}
		}
		for _, n := range absent {
			if v, ok := headerValue(s, n); ok {
				fmt.Fprintf(&b, "%s: %s\n", http.CanonicalHeaderKey(n), z.Header(v))
			} else {
				fmt.Fprintf(&b, "absent: %s\n", n)
			}
		}
		for _, e := range echo {
			fmt.Fprintf(&b, "echo: %s\n", e)
		}
		if len(s.Body) > 0 {
			b.WriteString("\n" + z.Tokens(string(s.Body)) + "\n")
		}
	}
	a.Set("upstream", []byte(b.String()))
	// response
	b.Reset()
	fmt.Fprintf(&b, "status: %d\n", res.Status)
	if d := res.Header.Get("X-Egress-Denied"); d != "" {
		fmt.Fprintf(&b, "denied: %s\n", d)
	}
	if res.Closed != "" {
		fmt.Fprintf(&b, "closed: %s\n", res.Closed)
	}
	if e := c.Response; e != nil {
		for _, s := range e.Contains {
			fmt.Fprintf(&b, "contains: %s\n", s)
		}
		for _, s := range e.Lacks {
			fmt.Fprintf(&b, "lacks: %s\n", s)
		}
	}
	a.Set("response", []byte(b.String()))
	// audit
	b.Reset()
	if res.Event == nil {
		b.WriteString("none\n")
	} else {
		got := auditFieldsOf(res)
		for _, f := range auditFields {
			if got[f] != "" {
				fmt.Fprintf(&b, "%s: %s\n", f, got[f])
			}
		}
		for _, u := range usesOf(res.Event) {
			fmt.Fprintf(&b, "use: %s\n", u)
		}
	}
	a.Set("audit", []byte(b.String()))
	return a.Format()
}
