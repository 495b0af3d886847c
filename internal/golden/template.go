package golden

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/egressd/egressd/vault"
)

// chunkMark is what {{chunk}} expands to: where the runner ends one write
// (and one chunk of a chunked body) and starts the next.
const chunkMark = "\x00chunk\x00"

// Tokens knows what the tokens of a case stand for.
type Tokens interface {
	// Placeholder returns the placeholder of name issued to sandbox sbx.
	Placeholder(sbx, name string) (string, error)
	// Value returns a secret's value: its current one, or the one of the
	// given version (1 is the value it was created with).
	Value(label string, version int) (string, error)
}

// Expand replaces every {{...}} token of s:
//
//	{{placeholder SBX NAME}}            the placeholder of NAME issued to SBX
//	{{placeholder SBX NAME split=N}}    the same, with a chunk boundary after N bytes
//	{{placeholder SBX NAME core}}       the same without its placeholder_prefix
//	{{value LABEL}}, {{value LABEL vN}} a secret's current value, or its version N
//	{{value LABEL query}}, … path       the same, URL-escaped for a query or a path
//	{{base64 TEXT}}                     TEXT (tokens expanded) in standard base64
//	{{repeat N TEXT}}                   TEXT N times
//	{{chunk}}                           a chunk boundary (request bodies only)
//	{{lbrace}}                          a literal "{{"
func Expand(s string, tk Tokens) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		j := closing(s, i+2)
		if j < 0 {
			return "", fmt.Errorf("unclosed token at %q", clip(s[i:], 40))
		}
		inner, err := Expand(s[i+2:j], tk)
		if err != nil {
			return "", err
		}
		out, err := call(inner, tk)
		if err != nil {
			return "", fmt.Errorf("{{%s}}: %w", s[i+2:j], err)
		}
		b.WriteString(out)
		s = s[j+2:]
	}
}

// closing finds the "}}" that closes a token whose text starts at from.
func closing(s string, from int) int {
	depth := 1
	for k := from; k+1 < len(s); k++ {
		switch s[k : k+2] {
		case "{{":
			depth++
			k++
		case "}}":
			depth--
			if depth == 0 {
				return k
			}
			k++
		}
	}
	return -1
}

func call(inner string, tk Tokens) (string, error) {
	fn, arg, _ := strings.Cut(inner, " ")
	switch fn {
	case "placeholder":
		f := strings.Fields(arg)
		if len(f) < 2 || len(f) > 3 {
			return "", fmt.Errorf("want placeholder SANDBOX NAME [split=N|core]")
		}
		ph, err := tk.Placeholder(f[0], f[1])
		if err != nil {
			return "", err
		}
		if len(f) == 3 && f[2] == "core" {
			return vault.PlaceholderCore(ph), nil
		}
		if len(f) == 3 {
			n, err := strconv.Atoi(strings.TrimPrefix(f[2], "split="))
			if err != nil || !strings.HasPrefix(f[2], "split=") || n <= 0 || n >= len(ph) {
				return "", fmt.Errorf("bad split %q (placeholder is %d bytes)", f[2], len(ph))
			}
			return ph[:n] + chunkMark + ph[n:], nil
		}
		return ph, nil
	case "value":
		f := strings.Fields(arg)
		if len(f) < 1 || len(f) > 3 {
			return "", fmt.Errorf("want value LABEL [vN] [query|path]")
		}
		v, escape := 0, ""
		for _, m := range f[1:] {
			if m == "query" || m == "path" {
				escape = m
				continue
			}
			n, err := strconv.Atoi(strings.TrimPrefix(m, "v"))
			if err != nil || n < 1 || !strings.HasPrefix(m, "v") {
				return "", fmt.Errorf("bad version or escape %q", m)
			}
			v = n
		}
		val, err := tk.Value(f[0], v)
		if err != nil {
			return "", err
		}
		switch escape {
		case "query":
			val = url.QueryEscape(val)
		case "path":
			val = url.PathEscape(val)
		}
		return val, nil
	case "base64":
		return base64.StdEncoding.EncodeToString([]byte(arg)), nil
	case "repeat":
		ns, text, ok := strings.Cut(arg, " ")
		n, err := strconv.Atoi(ns)
		if !ok || err != nil || n < 0 || n > 64<<20 {
			return "", fmt.Errorf("want repeat N TEXT")
		}
		return strings.Repeat(text, n), nil
	case "chunk":
		return chunkMark, nil
	case "lbrace":
		return "{{", nil
	}
	return "", fmt.Errorf("unknown token %q", fn)
}

// Tokenizer turns what happened back into the tokens a case file uses, so
// that failure messages and rewritten expectations never hold a value or a
// random placeholder.
type Tokenizer struct {
	pairs [][2]string // text, token; longest text first
}

// Add registers text as written by token.
func (z *Tokenizer) Add(text, token string) {
	if text == "" {
		return
	}
	for _, p := range z.pairs {
		if p[0] == text {
			return
		}
	}
	z.pairs = append(z.pairs, [2]string{text, token})
	sort.SliceStable(z.pairs, func(i, j int) bool { return len(z.pairs[i][0]) > len(z.pairs[j][0]) })
}

// Tokens rewrites s: a literal "{{" becomes {{lbrace}}, every known text its
// token, and long runs of one letter or digit a {{repeat}}.
func (z *Tokenizer) Tokens(s string) string {
	s = strings.ReplaceAll(s, "{{", "{{lbrace}}")
	args := make([]string, 0, 2*len(z.pairs))
	for _, p := range z.pairs {
		args = append(args, p[0], p[1])
	}
	if len(args) > 0 {
		s = strings.NewReplacer(args...).Replace(s)
	}
	return compressRuns(s)
}

// Header rewrites a header value; Basic credentials are decoded first so a
// value inside them shows as a token too.
func (z *Tokenizer) Header(v string) string {
	if rest, ok := strings.CutPrefix(v, "Basic "); ok {
		if dec, err := base64.StdEncoding.DecodeString(rest); err == nil {
			if t := z.Tokens(string(dec)); t != string(dec) {
				return "Basic {{base64 " + t + "}}"
			}
		}
	}
	return z.Tokens(v)
}

// compressRuns writes runs of 64 or more of one [A-Za-z0-9] byte as {{repeat}}.
func compressRuns(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		j := i + 1
		for j < len(s) && s[j] == c {
			j++
		}
		if j-i >= 64 && isAlnum(c) {
			fmt.Fprintf(&b, "{{repeat %d %c}}", j-i, c)
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
