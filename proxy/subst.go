// Package proxy is egressd's forward proxy: sandbox identity, egress
// policy, MITM or tunnel per host, and placeholder substitution in URLs,
// headers and streamed bodies.
package proxy

import (
	"bytes"
	"io"

	"github.com/egressd/egressd/vault"
)

const (
	marker    = vault.PlaceholderMarker
	coreLen   = vault.PlaceholderCoreLen
	maxPrefix = vault.MaxPlaceholderPrefix
)

// SubstFunc decides one placeholder occurrence. core is the marker and
// tail; lookback holds up to maxPrefix bytes just before it (never bytes of
// an earlier substituted placeholder). To substitute, it returns how many
// lookback bytes belong to the placeholder (its prefix), the value, and
// true. The scanner calls it once per occurrence, left to right, with the
// same arguments whether the input comes whole or in pieces.
type SubstFunc func(core, lookback []byte) (prefixLen int, value []byte, ok bool)

// Replace substitutes every placeholder in b that fn accepts. With none it
// returns b itself: no copy.
func Replace(b []byte, fn SubstFunc) []byte {
	var out []byte
	last, consumed, s := 0, 0, 0
	for s < len(b) {
		j := bytes.Index(b[s:], []byte(marker))
		if j < 0 {
			break
		}
		i := s + j
		if vault.PlaceholderCoreAt(b, i) {
			n, val, ok := fn(b[i:i+coreLen], b[max(i-maxPrefix, consumed):i])
			if ok && n >= 0 && n <= i-max(i-maxPrefix, consumed) {
				if out == nil {
					out = make([]byte, 0, len(b)+len(val))
				}
				out = append(out, b[last:i-n]...)
				out = append(out, val...)
				last = i + coreLen
				consumed, s = last, last
				continue
			}
		}
		s = i + 1
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// Contains reports whether b holds anything shaped like a placeholder.
func Contains(b []byte) bool {
	for s := 0; s < len(b); {
		j := bytes.Index(b[s:], []byte(marker))
		if j < 0 {
			return false
		}
		if vault.PlaceholderCoreAt(b, s+j) {
			return true
		}
		s += j + 1
	}
	return false
}

// readChunk is how much the streaming scanner reads from its source at once.
const readChunk = 32 << 10

// Reader substitutes placeholders in a stream. Its output equals what
// Replace gives for the whole input, however the source splits its reads.
type Reader struct {
	src io.Reader
	fn  SubstFunc

	buf      []byte // input not yet emitted, from index 0
	emitEnd  int    // buf[:emitEnd] is decided and may be emitted
	scanned  int    // markers starting before this index are decided
	consumed int    // bytes before this index were part of a substitution
	out      []byte // substituted output waiting to be read
	outOff   int
	err      error // from src; io.EOF at the end
}

// NewReader returns a Reader over src.
func NewReader(src io.Reader, fn SubstFunc) *Reader {
	return &Reader{src: src, fn: fn, buf: make([]byte, 0, readChunk+coreLen+maxPrefix)}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for {
		if r.outOff < len(r.out) {
			n := copy(p, r.out[r.outOff:])
			r.outOff += n
			if r.outOff == len(r.out) {
				r.out, r.outOff = r.out[:0], 0
			}
			return n, nil
		}
		if r.emitEnd > 0 {
			n := copy(p, r.buf[:r.emitEnd])
			r.drop(n)
			return n, nil
		}
		if r.err != nil {
			if len(r.buf) == 0 {
				return 0, r.err
			}
		} else {
			r.fill()
		}
		r.scan()
		if r.err != nil && r.err != io.EOF && r.emitEnd == 0 && len(r.out) == 0 {
			return 0, r.err
		}
	}
}

// drop removes n emitted bytes from the front of buf.
func (r *Reader) drop(n int) {
	m := copy(r.buf, r.buf[n:])
	r.buf = r.buf[:m]
	r.emitEnd -= n
	r.scanned -= n
	r.consumed = max(r.consumed-n, 0)
}

func (r *Reader) fill() {
	if cap(r.buf)-len(r.buf) < readChunk/2 {
		nb := make([]byte, len(r.buf), len(r.buf)+readChunk+coreLen+maxPrefix)
		copy(nb, r.buf)
		r.buf = nb
	}
	n, err := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
	r.buf = r.buf[:len(r.buf)+n]
	if err != nil {
		r.err = err
	}
}

// scan decides every marker it can and moves decided bytes to emitEnd or,
// around a substitution, to out.
func (r *Reader) scan() {
	final := r.err != nil
	limit := len(r.buf) - (coreLen - 1)
	if final {
		limit = len(r.buf)
	}
	b := r.buf
	for r.scanned < limit {
		j := bytes.Index(b[r.scanned:], []byte(marker))
		if j < 0 || r.scanned+j >= limit {
			r.scanned = max(limit, r.scanned)
			break
		}
		i := r.scanned + j
		if vault.PlaceholderCoreAt(b, i) {
			lb := max(i-maxPrefix, r.consumed)
			n, val, ok := r.fn(b[i:i+coreLen], b[lb:i])
			if ok && n >= 0 && n <= i-lb {
				r.out = append(r.out, b[:i-n]...)
				r.out = append(r.out, val...)
				end := i + coreLen
				m := copy(b, b[end:])
				r.buf = b[:m]
				b = r.buf
				r.scanned, r.consumed, r.emitEnd = 0, 0, 0
				limit -= end
				continue
			}
		}
		r.scanned = i + 1
	}
	if final && r.scanned >= len(b) {
		r.emitEnd = len(b)
		return
	}
	// Keep maxPrefix bytes before the scan point: they may be the prefix of
	// a placeholder whose marker has not arrived yet.
	r.emitEnd = max(r.scanned-maxPrefix, r.consumed, r.emitEnd)
	r.emitEnd = min(r.emitEnd, r.scanned)
}
