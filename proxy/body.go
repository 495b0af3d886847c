package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/egressd/egressd/vault"
)

// maxInflate bounds a buffered gzip body once decompressed.
const maxInflateRatio = 32

// substituteBody handles the request body. When a secret of the sandbox may
// be substituted in this body, bodies up to MaxBufferedBody are read whole
// (Content-Length stays exact) and larger ones stream chunked; gzip bodies
// are decoded and re-encoded. Otherwise the body passes through without a
// copy while an observer notes any placeholder in it.
func (p *Proxy) substituteBody(req *http.Request, s *subst, substitute bool) Reason {
	if !substitute {
		req.Body = newObserver(req.Body, s.fn(vault.InBody, true))
		return ReasonNone
	}
	fn := s.fn(vault.InBody, false)
	switch enc := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return p.plainBody(req, fn)
	case "gzip", "x-gzip":
		return p.gzipBody(req, fn)
	default:
		// An encoding we cannot decode: pass it through, noting nothing.
		return ReasonNone
	}
}

// readUpTo reads at most limit+1 bytes: whole reports whether that was all.
func readUpTo(r io.Reader, n int64, limit int64) (buf []byte, whole bool, err error) {
	size := limit + 1
	if n >= 0 && n <= limit {
		size = n + 1
	}
	buf = make([]byte, 0, size)
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
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

func (p *Proxy) plainBody(req *http.Request, fn SubstFunc) Reason {
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
	// Too large to buffer: stream it, chunked.
	rest := req.Body
	req.Body = readCloser{NewReader(io.MultiReader(bytes.NewReader(buf), rest), fn), rest}
	setStreamed(req)
	return ReasonNone
}

func (p *Proxy) gzipBody(req *http.Request, fn SubstFunc) Reason {
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
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(out)
			zw.Close()
			setBody(req, z.Bytes())
			return ReasonNone
		}
		req.Body = io.NopCloser(bytes.NewReader(buf))
	} else {
		req.Body = readCloser{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
	}
	// Stream: decode, substitute, encode, through a pipe.
	src := req.Body
	zr, err := gzip.NewReader(src)
	if err != nil {
		return ReasonBadRequest
	}
	pr, pw := io.Pipe()
	go func() {
		zw := gzip.NewWriter(pw)
		_, err := io.Copy(zw, NewReader(zr, fn))
		if err == nil {
			err = zw.Close()
		}
		src.Close()
		pw.CloseWithError(err)
	}()
	req.Body = pr
	setStreamed(req)
	return ReasonNone
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
