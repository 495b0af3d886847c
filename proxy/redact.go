package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// redactor replaces, in a response stream, every form of a real value that
// went out in the request with the placeholder it stood for, so an upstream
// that echoes a credential never shows it to the sandbox. It reads the
// request's echoes live: a streamed request body may still be substituting
// values while the response flows. At the end it masks the trailers too.
// A body that breaks off (a read error other than io.EOF, or an end short
// of its Content-Length) drops what was held back: the start of a value
// whose rest never came is never given out.
type redactor struct {
	src  io.ReadCloser
	sub  *subst
	resp *http.Response
	// owed is what the source still owes of its declared length, when
	// counted.
	owed    int64
	counted bool

	buf []byte // undecided input
	out []byte // decided output
	off int
	err error
}

// redactRead is how much the redactor asks its source for at once.
const redactRead = 8 << 10

// newRedactor reads src, the body of resp (nil in tests), whose
// ContentLength, if known, is the length the body must reach.
func newRedactor(src io.ReadCloser, sub *subst, resp *http.Response) *redactor {
	r := &redactor{src: src, sub: sub, resp: resp}
	if resp != nil && resp.ContentLength >= 0 {
		r.owed, r.counted = resp.ContentLength, true
	}
	return r
}

func (r *redactor) Close() error { return r.src.Close() }

func (r *redactor) Read(p []byte) (int, error) {
	for {
		if r.off < len(r.out) {
			n := copy(p, r.out[r.off:])
			r.off += n
			return n, nil
		}
		r.out, r.off = r.out[:0], 0
		echoes, _ := r.sub.snapshot()
		if r.err != nil {
			if len(r.buf) > 0 {
				if r.err == io.EOF {
					r.decide(echoes, len(r.buf))
				} else {
					// Broke off: give out what cannot begin a value, drop
					// the rest.
					r.decide(echoes, len(r.buf)-holdBack(r.buf, echoes))
					r.buf = r.buf[:0]
				}
				continue
			}
			if r.err == io.EOF && r.resp != nil {
				redactHeader(r.resp.Trailer, echoes)
			}
			return 0, r.err
		}
		longest := 0
		for _, e := range echoes {
			longest = max(longest, len(e.value))
		}
		if cap(r.buf)-len(r.buf) < redactRead {
			nb := make([]byte, len(r.buf), len(r.buf)+redactRead+longest)
			copy(nb, r.buf)
			r.buf = nb
		}
		n, err := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if r.counted {
			if r.owed -= int64(n); err == io.EOF && r.owed > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		r.err = err
		if safe := len(r.buf) - holdBack(r.buf, echoes); safe > 0 && err == nil {
			r.decide(echoes, safe)
		}
	}
}

// holdBack is how many bytes at the end of b may be the start of a value
// whose rest has not arrived: the longest end of b that begins some echo
// (and is shorter than it). Only those wait for the next read: a stream
// of events reaches the client as it comes, however long the values.
func holdBack(b []byte, echoes []echo) int {
	hold := 0
	for _, e := range echoes {
		v := e.value
		for i := max(len(b)-len(v)+1, 0); i < len(b)-hold; i++ {
			if b[i] == v[0] && bytes.HasPrefix(v, b[i:]) {
				hold = len(b) - i
				break
			}
		}
	}
	return hold
}

// decide moves buf[:upto] (and any value that starts before upto) to out,
// masking values.
func (r *redactor) decide(echoes []echo, upto int) {
	i := 0
	for i < upto {
		at, which := -1, -1
		for k, e := range echoes {
			if j := bytes.Index(r.buf[i:], e.value); j >= 0 && (at < 0 || j < at || j == at && len(e.value) > len(echoes[which].value)) {
				at, which = j, k
			}
		}
		if at < 0 || i+at >= upto {
			break
		}
		r.out = append(r.out, r.buf[i:i+at]...)
		r.out = append(r.out, echoes[which].placeholder...)
		i += at + len(echoes[which].value)
	}
	if i < upto {
		r.out = append(r.out, r.buf[i:upto]...)
		i = upto
	}
	n := copy(r.buf, r.buf[i:])
	r.buf = r.buf[:n]
}

// redactHeader masks every echo in every value of h, and in every name:
// an upstream may echo a value as a header's name, which reaches the
// client in canonical case, so names are matched without regard to case.
func redactHeader(h http.Header, echoes []echo) {
	if len(echoes) == 0 {
		return
	}
	var renamed map[string]string
	for k, vs := range h {
		for i, v := range vs {
			for _, e := range echoes {
				if strings.Contains(v, e.valueS) {
					v = strings.ReplaceAll(v, e.valueS, e.placeS)
				}
			}
			vs[i] = v
		}
		nk := k
		for _, e := range echoes {
			nk = replaceFoldASCII(nk, e.valueS, e.placeS)
		}
		if nk != k {
			if renamed == nil {
				renamed = map[string]string{}
			}
			renamed[k] = nk
		}
	}
	for k, nk := range renamed {
		h[nk] = append(h[nk], h[k]...)
		delete(h, k)
	}
}

// replaceFoldASCII replaces every occurrence of old in s, ignoring ASCII
// case (a header name is ASCII). It returns s itself when old is not in
// it.
func replaceFoldASCII(s, old, repl string) string {
	i := indexFoldASCII(s, old)
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString(repl)
		s = s[i+len(old):]
		i = indexFoldASCII(s, old)
	}
	b.WriteString(s)
	return b.String()
}

// indexFoldASCII is strings.Index ignoring ASCII case, without a copy.
func indexFoldASCII(s, sub string) int {
	if sub == "" || len(sub) > len(s) {
		return -1
	}
	first := lowerASCII(sub[0])
	for i := 0; i+len(sub) <= len(s); i++ {
		if lowerASCII(s[i]) == first && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// maskAll replaces every echo in b, leftmost and longest first, as the
// streaming redactor does. Without one it returns b itself.
func maskAll(b []byte, echoes []echo) []byte {
	found := false
	for _, e := range echoes {
		if bytes.Contains(b, e.value) {
			found = true
			break
		}
	}
	if !found {
		return b
	}
	r := &redactor{buf: b}
	r.decide(echoes, len(b))
	return r.out
}
