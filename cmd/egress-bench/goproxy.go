package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/egressd/egressd/certs"
)

// serveGoproxy runs the baseline: a bare goproxy MITM proxy that only swaps
// one Authorization value, set up the way STYLE.md's known traps say a tuned
// one must be — an ECDSA P-256 CA with a leaf cache, its own transport
// (verification on, Proxy nil, our own dialer, a large idle pool per host),
// and req.Close cleared so that a client's Connection: close never closes a
// pooled upstream connection. No authentication, policy, audit, metrics or
// logging: the floor that egressd's MITM is compared with.
func serveGoproxy(spec childSpec, l net.Listener) (served, error) {
	ca, _, err := certs.LoadOrCreateCA(filepath.Join(spec.Dir, goproxyCADir))
	if err != nil {
		return nil, err
	}
	caCert := ca.TLSCertificate()
	roots, err := loadPool(caPEMPath(spec.Dir, upstreamCADir))
	if err != nil {
		return nil, err
	}
	var sw swap
	b, err := os.ReadFile(filepath.Join(spec.Dir, swapFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &sw); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           loopbackDial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Tr = tr
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return loopbackDial(req.Context(), network, addr)
	}
	gp.CertStore = &leafStore{m: map[string]*tls.Certificate{}}
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&caCert)}
	gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return mitm, host
	})
	gp.OnRequest().DoFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		req.Close = false
		if req.Header.Get("Authorization") == sw.From {
			req.Header.Set("Authorization", sw.To)
		}
		return req, nil
	})
	srv := &http.Server{
		Handler:           gp,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	h := &httpServed{srv: srv, done: make(chan struct{}), also: []func(){tr.CloseIdleConnections}}
	go func() {
		defer close(h.done)
		srv.Serve(l)
	}()
	return h, nil
}

// leafStore is goproxy's CertStorage: one leaf per host name, minted once.
type leafStore struct {
	mu sync.Mutex
	m  map[string]*tls.Certificate
}

func (s *leafStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m[host]; ok {
		return c, nil
	}
	c, err := gen()
	if err != nil {
		return nil, err
	}
	if len(s.m) < 1024 {
		s.m[host] = c
	}
	return c, nil
}
