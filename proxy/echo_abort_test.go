package proxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// Regression (finding 6): an upstream that breaks its answer off inside
// an echoed value (a Content-Length body cut short, a chunked body with
// no last chunk, a gzip stream cut) gets nothing of what the redactor held
// back to the sandbox: it flushed all but the value's last byte.
func TestEchoAbortMidValueDropsHeldBack(t *testing.T) {
	e, c, ph := echoEnv(t, nil)
	cut := func(r *http.Request) string { v := r.Header.Get("X-Key"); return "hello " + v[:len(v)-1] }
	cases := []struct {
		name string
		raw  func(r *http.Request) string // the answer as written, up to where it breaks off
	}{
		{"content-length cut short", func(r *http.Request) string {
			// Longer than MaxBufferedBody: streamed through the redactor.
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2097152\r\n\r\n" + cut(r)
		}},
		{"chunked without last chunk", func(r *http.Request) string {
			b := cut(r)
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(b)), 16) + "\r\n" + b + "\r\n"
		}},
		{"gzip stream cut", func(r *http.Request) string {
			// A flushed, unfinished gzip stream: the decoder gives out the
			// text, then the body ends early.
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			io.WriteString(zw, cut(r))
			zw.Flush()
			return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\nContent-Length: " + strconv.Itoa(z.Len()+100) + "\r\n\r\n" + z.String()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.setReply(func(w http.ResponseWriter, r *http.Request, _ []byte) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				io.WriteString(conn, tc.raw(r))
				conn.Close()
			})
			req, _ := http.NewRequest("GET", e.url("https", echoHost, "/v1"), nil)
			req.Header.Set("X-Key", ph)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("the answer ended as if whole (%q)", got)
			}
			if bytes.Contains(got, []byte(realValue[:4])) {
				t.Fatalf("the sandbox got the start of the value: %q", got)
			}
			if string(got) != "hello " {
				t.Fatalf("got %q, want what came before the value", got)
			}
		})
	}
}

// The redactor on its own: a read error, or an end short of the declared
// length, drops what it held back and passes the error on; io.EOF at the
// declared length gives everything out.
func TestRedactorDropsHeldBackWhenBodyBreaksOff(t *testing.T) {
	echoes := []echo{newEcho([]byte("secret-value-1"), []byte("EGP_one"))}
	in := "a secret-value-1 b secret-val"
	errBroken := errors.New("connection reset")
	cases := []struct {
		name     string
		declared int64 // the response's ContentLength; -1 unknown
		end      error
		want     string
		wantErr  error
	}{
		{"read error", -1, errBroken, "a EGP_one b ", errBroken},
		{"short of Content-Length", int64(len(in)) + 10, io.EOF, "a EGP_one b ", io.ErrUnexpectedEOF},
		{"whole", int64(len(in)), io.EOF, "a EGP_one b secret-val", nil},
		{"unknown length", -1, io.EOF, "a EGP_one b secret-val", nil},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 5, 100} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				src := &endWith{r: &chunker{data: []byte(in), sizes: []int{size}}, err: tc.end}
				r := newRedactor(io.NopCloser(src), &subst{echoes: echoes}, &http.Response{ContentLength: tc.declared})
				got, err := io.ReadAll(r)
				if string(got) != tc.want || !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
					t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
				}
			})
		}
	}
}

// endWith reads r, then ends with err instead of io.EOF.
type endWith struct {
	r   io.Reader
	err error
}

func (e *endWith) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		err = e.err
	}
	return n, err
}
