package proxy

import (
	"bytes"
	"io"
)

// redactor replaces, in a response stream, every real value that went out
// in the request with the placeholder it stood for, so an upstream that
// echoes a credential never shows it to the sandbox.
type redactor struct {
	src    io.ReadCloser
	echoes []echo
	hold   int // longest value - 1: bytes that may start a value still arriving

	buf []byte // undecided input
	out []byte // decided output
	off int
	err error
}

// redactRead is how much the redactor asks its source for at once.
const redactRead = 8 << 10

func newRedactor(src io.ReadCloser, echoes []echo) *redactor {
	r := &redactor{src: src}
	for _, e := range echoes {
		if len(e.value) < 4 { // too short to mask without mangling ordinary text
			continue
		}
		r.echoes = append(r.echoes, e)
		r.hold = max(r.hold, len(e.value)-1)
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
		if r.err != nil {
			if len(r.buf) > 0 {
				r.decide(len(r.buf))
				continue
			}
			return 0, r.err
		}
		if cap(r.buf)-len(r.buf) < redactRead {
			nb := make([]byte, len(r.buf), len(r.buf)+redactRead+r.hold)
			copy(nb, r.buf)
			r.buf = nb
		}
		n, err := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		r.err = err
		if len(r.echoes) == 0 {
			r.out, r.buf = append(r.out, r.buf...), r.buf[:0]
			continue
		}
		if safe := len(r.buf) - r.hold; safe > 0 && err == nil {
			r.decide(safe)
		}
	}
}

// decide moves buf[:upto] (and any value that starts before upto) to out,
// masking values.
func (r *redactor) decide(upto int) {
	i := 0
	for i < upto {
		at, which := -1, -1
		for k, e := range r.echoes {
			if j := bytes.Index(r.buf[i:], e.value); j >= 0 && (at < 0 || j < at || j == at && len(e.value) > len(r.echoes[which].value)) {
				at, which = j, k
			}
		}
		if at < 0 || i+at >= upto {
			break
		}
		r.out = append(r.out, r.buf[i:i+at]...)
		r.out = append(r.out, r.echoes[which].placeholder...)
		i += at + len(r.echoes[which].value)
	}
	if i < upto {
		r.out = append(r.out, r.buf[i:upto]...)
		i = upto
	}
	n := copy(r.buf, r.buf[i:])
	r.buf = r.buf[:n]
}
