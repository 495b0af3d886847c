package proxy

import (
	"bytes"
	"io"

	"github.com/egressd/egressd/vault"
)

// winLen is how much of the stream the observer keeps: lookback for a
// prefix plus the positions whose core has not fully arrived.
const winLen = maxPrefix + coreLen - 1

// observer passes a body through untouched (no copy: it reads straight
// into the caller's buffer) and reports every placeholder occurrence to fn,
// ignoring its answer. It is used when no secret of the sandbox may be
// substituted in this body, so that the audit event still notes a quoted
// placeholder. It calls fn exactly as Replace would with an fn that never
// substitutes, however the reads are split.
type observer struct {
	src   io.ReadCloser
	fn    SubstFunc
	win   [winLen]byte
	n     int   // bytes in win
	total int64 // bytes seen
	// scratch space, kept here so a read allocates nothing
	tmp [winLen + coreLen - 1]byte
	lb  [maxPrefix]byte
}

func newObserver(src io.ReadCloser, fn SubstFunc) *observer { return &observer{src: src, fn: fn} }

func (o *observer) Read(p []byte) (int, error) {
	n, err := o.src.Read(p)
	if n > 0 {
		o.scan(p[:n])
	}
	return n, err
}

func (o *observer) Close() error { return o.src.Close() }

func (o *observer) scan(b []byte) {
	// Positions that start in the window: the last coreLen-1 of the stream
	// so far, undecided until their core arrives.
	undecided := int(min(int64(coreLen-1), o.total))
	tmp := &o.tmp
	k := copy(tmp[:], o.win[:o.n])
	k += copy(tmp[k:], b[:min(len(b), coreLen-1)])
	for i := o.n - undecided; i < o.n && i+coreLen <= k; i++ {
		if vault.PlaceholderCoreAt(tmp[:k], i) {
			o.fn(tmp[i:i+coreLen], tmp[max(i-maxPrefix, 0):i])
		}
	}
	// Positions inside b with their whole core in b.
	for s := 0; s+coreLen <= len(b); {
		j := bytes.Index(b[s:], []byte(marker))
		if j < 0 || s+j+coreLen > len(b) {
			break
		}
		i := s + j
		if vault.PlaceholderCoreAt(b, i) {
			if i >= maxPrefix {
				o.fn(b[i:i+coreLen], b[i-maxPrefix:i])
			} else {
				lb := &o.lb
				from := max(o.n-(maxPrefix-i), 0)
				m := copy(lb[:], o.win[from:o.n])
				m += copy(lb[m:], b[:i])
				o.fn(b[i:i+coreLen], lb[:m])
			}
		}
		s = i + 1
	}
	// Keep the stream's last winLen bytes.
	if len(b) >= winLen {
		o.n = copy(o.win[:], b[len(b)-winLen:])
	} else {
		if drop := o.n + len(b) - winLen; drop > 0 {
			copy(o.win[:], o.win[drop:o.n])
			o.n -= drop
		}
		o.n += copy(o.win[o.n:], b)
	}
	o.total += int64(len(b))
}
