package api

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// The formats of an env answer (?format=).
const (
	formatJSON   = "json"
	formatDotenv = "dotenv"
	formatShell  = "shell"
)

// envFormatOf reads ?format=: json (the default), dotenv or shell.
func envFormatOf(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", formatJSON:
		return formatJSON, nil
	case formatDotenv, formatShell:
		return f, nil
	}
	return "", errorf(ErrBadRequest, "format: want json, dotenv or shell")
}

// writeEnv answers env as dotenv lines (NAME=value; a value with anything
// but [A-Za-z0-9_./:@%+,=<>-] double-quoted, \ and " escaped) or shell
// lines (export NAME='value', a ' written '\”), sorted by name, after a
// comment naming the sandbox. Names are [A-Za-z_][A-Za-z0-9_]*; values hold
// no line breaks (vault refuses them in every value that reaches an env).
func writeEnv(w http.ResponseWriter, status int, format, sandboxID string, env map[string]string) {
	var b bytes.Buffer
	b.WriteString("# egressd sandbox " + sandboxID + "\n")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range env {
			if !yield(k) {
				return
			}
		}
	}) {
		v := env[k]
		if format == formatShell {
			b.WriteString("export " + k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'\n")
			continue
		}
		b.WriteString(k + "=" + dotenvValue(v) + "\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func dotenvValue(v string) string {
	bare := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isAlnumByte(c) && !strings.ContainsRune("_./:@%+,=<>-", rune(c)) {
			bare = false
			break
		}
	}
	if bare {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// noProxyList joins defaultNoProxy and the operator's extra entries, each
// a host name, a .domain, an IP address or a CIDR, without repeats.
func noProxyList(extra []string) (string, error) {
	out := slices.Clone(defaultNoProxy)
	for _, e := range extra {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if !validNoProxy(e) {
			return "", fmt.Errorf("api: NoProxy entry %q: want a host name, .domain, IP address or CIDR", e)
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return strings.Join(out, ","), nil
}

func validNoProxy(e string) bool {
	if _, err := netip.ParsePrefix(e); err == nil {
		return true
	}
	if _, err := netip.ParseAddr(e); err == nil {
		return true
	}
	host := strings.TrimPrefix(e, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || !isAlnumByte(label[0]) || !isAlnumByte(label[len(label)-1]) {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnumByte(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}
