package proxy

import (
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Content codings, read so that redaction sees what an upstream echoes.
// With redaction on, egressd (not the sandbox, nor the transport, which
// reads only the first Content-Encoding line) asks the upstream for gzip
// and undoes it; an answer coded in a way egressd cannot read is refused
// when its request carried a value.

// Codings contentCoding names.
const (
	codingNone    = ""
	codingGzip    = "gzip"
	codingDeflate = "deflate"
)

// contentCoding reads a message's Content-Encoding lines together: every
// line, comma lists split, case ignored, spaces trimmed, empty list
// elements skipped (RFC 9110 section 5.6.1). It names the one coding
// they apply: codingNone (no header, or identity), codingGzip (x-gzip
// too, which RFC 9110 section 8.4.1.3 makes the same) or codingDeflate.
// ok is false for any other coding and for more than one, identity
// included: such a body is one egressd cannot scan.
func contentCoding(h http.Header) (coding string, ok bool) {
	n := 0
	for _, line := range h["Content-Encoding"] {
		for rest := line; rest != ""; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			if tok = strings.TrimSpace(tok); tok == "" {
				continue
			}
			if n++; n > 1 {
				return "", false
			}
			switch {
			case strings.EqualFold(tok, "identity"):
				coding = codingNone
			case strings.EqualFold(tok, "gzip"), strings.EqualFold(tok, "x-gzip"):
				coding = codingGzip
			case strings.EqualFold(tok, "deflate"):
				coding = codingDeflate
			default:
				return "", false
			}
		}
	}
	return coding, true
}

// acceptGzip is the Accept-Encoding egressd sends; shared, never changed.
var acceptGzip = []string{"gzip"}

// askGzip replaces the sandbox's Accept-Encoding with egressd's own, so
// that egressd decodes the answer and can scan it: gzip, as the
// transport would have asked (not for HEAD, nor with a Range), which
// respond then undoes.
func askGzip(req *http.Request, st *reqState) {
	delete(req.Header, "Accept-Encoding")
	if req.Method != http.MethodHead && len(req.Header["Range"]) == 0 {
		req.Header["Accept-Encoding"] = acceptGzip
		st.askedGzip = true
	}
}

// bodyless: an answer with no body to decode or scan.
func bodyless(resp *http.Response) bool {
	return resp.Body == nil || resp.Body == http.NoBody || resp.StatusCode == http.StatusSwitchingProtocols
}

// undoAskedGzip decodes an answer coded in exactly the gzip egressd asked
// for, as the transport would have, for a request that carried no value.
// Anything else passes as it came.
func undoAskedGzip(resp *http.Response) {
	if bodyless(resp) {
		return
	}
	if coding, ok := contentCoding(resp.Header); ok && coding == codingGzip {
		decode(resp, coding)
	}
}

// decodeForRedaction undoes the answer's gzip or deflate coding (asked
// for, or sent unasked), so the body can be scanned. It reports false for
// a coding it cannot read, and for more than one (two Content-Encoding
// lines included): fail closed.
func decodeForRedaction(resp *http.Response) bool {
	if bodyless(resp) {
		return true
	}
	coding, ok := contentCoding(resp.Header)
	if !ok {
		return false
	}
	if coding != codingNone {
		decode(resp, coding)
	}
	return true
}

func decode(resp *http.Response, coding string) {
	resp.Body = &decodedBody{body: resp.Body, coding: coding}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
}

// gzipReaders keeps gzip readers (and their inflate state) between answers.
var gzipReaders sync.Pool

// decodedBody decodes a body as it is read, its decoder made at the first
// read (so the answer's header never waits for the body); a gzip reader
// goes back to gzipReaders at the end. A decoding error ends the body
// abnormally: the redactor then gives out nothing it held back.
type decodedBody struct {
	body   io.ReadCloser
	coding string
	r      io.Reader
	zr     *gzip.Reader
	err    error
}

func (d *decodedBody) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.r == nil {
		if d.err = d.start(); d.err != nil {
			return 0, d.err
		}
	}
	n, err := d.r.Read(p)
	if err != nil {
		d.err = err
		if d.zr != nil {
			d.zr.Reset(eofReader{}) // lets go of the body
			gzipReaders.Put(d.zr)
			d.zr = nil
		}
	}
	return n, err
}

func (d *decodedBody) start() error {
	if d.coding == codingDeflate {
		zr, err := zlib.NewReader(d.body)
		d.r = zr
		return err
	}
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	if err := zr.Reset(d.body); err != nil {
		zr.Reset(eofReader{})
		gzipReaders.Put(zr)
		return err
	}
	d.r, d.zr = zr, zr
	return nil
}

// Close closes the body; a reader not read to its end is left to the
// collector (Close may come from another goroutine than Read).
func (d *decodedBody) Close() error { return d.body.Close() }

// eofReader is an empty flate.Reader: a gzip reader reset on it
// allocates nothing and holds no body.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
func (eofReader) ReadByte() (byte, error)  { return 0, io.EOF }
