package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/egressd/egressd/certs"
)

// upstreamReply is the small JSON every request gets.
var upstreamReply = []byte(`{"object":"list","data":[{"id":"gpt-4o","object":"model","owned_by":"bench"}]}` + "\n")

// upstream is the HTTPS server at the end of every phase: HTTP/1.1 with
// keep-alive, certificates for any name from its own CA. It reads every
// request body to the end and answers 422 where a real value is due but
// missing, so a substitution that did not happen counts as an error.
type upstream struct {
	srv  *http.Server
	port string
	w    *world
	bufs sync.Pool
}

func startUpstream(w *world) (*upstream, error) {
	leafs, err := certs.NewLeafCache(w.Upstream, certs.LeafConfig{})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{w: w, bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
	_, u.port, _ = net.SplitHostPort(l.Addr().String())
	u.srv = &http.Server{
		Handler:           u,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{
			GetCertificate: leafs.GetCertificate,
			NextProtos:     []string{"http/1.1"},
			MinVersion:     tls.VersionTLS12,
		},
	}
	go u.srv.ServeTLS(l, "", "")
	return u, nil
}

func (u *upstream) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	ok := true
	switch host {
	case hostAPI:
		io.Copy(io.Discard, r.Body)
		ok = r.Header.Get("Authorization") == "Bearer "+u.w.HeaderValue
	case hostBody:
		buf := u.bufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err := buf.ReadFrom(r.Body)
		ok = err == nil && bytes.Contains(buf.Bytes(), []byte(u.w.BodyValue)) && !bytes.Contains(buf.Bytes(), []byte(u.w.BodyPH))
		u.bufs.Put(buf)
	default:
		io.Copy(io.Discard, r.Body)
	}
	rw.Header().Set("Content-Type", "application/json")
	if !ok {
		rw.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(rw, `{"error":"the real value did not arrive"}`+"\n")
		return
	}
	rw.Write(upstreamReply)
}

func (u *upstream) close() { u.srv.Close() }
