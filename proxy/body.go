package proxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/egressd/egressd/vault"
)

// maxInflate bounds a buffered gzip body once decompressed.
const maxInflateRatio = 32

// substituteBody handles the request body. When a secret of the sandbox may
// be substituted in this body, bodies up to MaxBufferedBody are read whole
// (Content-Length stays exact) and larger ones stream chunked; a gzip body
// is decoded and, once a value may be in it, goes on decoded (never
// re-compressed, so that an upstream that stores or echoes it hands back
// bytes the redactor can read). Otherwise the body passes through without
// a copy while an observer notes any placeholder in it.
func (p *Proxy) substituteBody(req *http.Request, s *subst, substitute bool) Reason {
	if !substitute {
		req.Body = newObserver(req.Body, s.fn(vault.InBody, true))
		return ReasonNone
	}
	fn := s.fn(vault.InBody, false)
	switch coding, ok := contentCoding(req.Header); {
	case ok && coding == codingNone:
		return p.plainBody(req, s, fn)
	case ok && coding == codingGzip:
		return p.gzipBody(req, s, fn)
	default:
		// A coding we do not decode, or more than one: pass it through,
		// noting nothing.
		return ReasonNone
	}
}

// readUpTo reads at most limit+1 bytes: whole reports whether that was all.
// The buffer grows as data arrives (n, the declared length, only sizes the
// first allocation), so a short body never costs the whole limit.
func readUpTo(r io.Reader, n int64, limit int64) (buf []byte, whole bool, err error) {
	first := int64(32 << 10)
	if n >= 0 && n <= limit {
		first = n + 1
	}
	buf = make([]byte, 0, min(first, limit+1))
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := buf[len(buf):min(cap(buf), int(limit+1))]
		m, err := r.Read(room)
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	return buf, false, nil
}

func (p *Proxy) plainBody(req *http.Request, s *subst, fn SubstFunc) Reason {
	buf, whole, err := readUpTo(req.Body, req.ContentLength, p.cfg.MaxBufferedBody)
	if err != nil {
		return ReasonBadRequest
	}
	if whole {
		req.Body.Close()
		out := Replace(buf, fn)
		setBody(req, out)
		return ReasonNone
	}
	// Too large to buffer: stream it, chunked. Values may now be substituted
	// after the response has begun: the redactor must keep looking.
	s.mu.Lock()
	s.bodyLive = true
	s.mu.Unlock()
	rest := req.Body
	req.Body = readCloser{NewReader(io.MultiReader(bytes.NewReader(buf), rest), fn), rest}
	setStreamed(req)
	return ReasonNone
}

func (p *Proxy) gzipBody(req *http.Request, s *subst, fn SubstFunc) Reason {
	buf, whole, err := readUpTo(req.Body, req.ContentLength, p.cfg.MaxBufferedBody)
	if err != nil {
		return ReasonBadRequest
	}
	if whole {
		req.Body.Close()
		zr, err := gzip.NewReader(bytes.NewReader(buf))
		if err != nil {
			return ReasonBadRequest
		}
		plain, complete, err := readUpTo(zr, -1, p.cfg.MaxBufferedBody*maxInflateRatio)
		if err != nil {
			return ReasonBadRequest
		}
		if complete {
			out := Replace(plain, fn)
			if len(out) == len(plain) && (len(out) == 0 || &out[0] == &plain[0]) {
				setBody(req, buf) // nothing substituted: the original bytes go out
				return ReasonNone
			}
			setBody(req, out)
			req.Header.Del("Content-Encoding")
			return ReasonNone
		}
		req.Body = io.NopCloser(bytes.NewReader(buf))
	} else {
		req.Body = readCloser{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
	}
	// Stream: decode and substitute as the transport reads; the body goes
	// on decoded.
	s.mu.Lock()
	s.bodyLive = true
	s.mu.Unlock()
	src := req.Body
	counted := &countingReader{r: src}
	zr, err := gzip.NewReader(counted)
	if err != nil {
		return ReasonBadRequest
	}
	req.Body = readCloser{NewReader(&inflateGuard{r: zr, in: counted}, fn), src}
	req.Header.Del("Content-Encoding")
	setStreamed(req)
	return ReasonNone
}

var errBodyClosed = errors.New("request body closed")

// errInflate is a gzip body that inflates far beyond its size.
var errInflate = errors.New("gzip body inflates more than 100 times its size")

// inflateGuard refuses a decompression bomb in a streamed gzip body.
type inflateGuard struct {
	r   io.Reader
	in  *countingReader
	out int64
}

func (g *inflateGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	g.out += int64(n)
	if g.out > 1<<20 && g.out > 100*g.in.n {
		return n, errInflate
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func setBody(req *http.Request, b []byte) {
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.ContentLength = int64(len(b))
	req.Header.Set("Content-Length", strconv.Itoa(len(b)))
	req.TransferEncoding = nil
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func setStreamed(req *http.Request) {
	req.ContentLength = -1
	req.Header.Del("Content-Length")
	req.TransferEncoding = []string{"chunked"}
	req.GetBody = nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
