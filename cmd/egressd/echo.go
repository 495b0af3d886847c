package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of egressd echo.
const (
	defaultEchoListen = "127.0.0.1:8443"
	defaultEchoNames  = "echo.test,localhost,127.0.0.1,::1"
)

// echoOptions are the flags of egressd echo.
type echoOptions struct {
	listen  string
	names   []string
	certOut string
	addrOut string
}

// runEcho runs a tiny HTTPS upstream that answers every request with what
// it received (method, path, headers) as JSON and logs one line per
// request on stdout: a stand-in for an API, to try egressd without the
// internet and to see what reached the upstream. Its certificate is
// self-signed, made fresh in memory at start.
func runEcho(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	listen := fs.String("listen", defaultEchoListen, "address to serve HTTPS on; port 0 picks a free port (see --addr-out)")
	names := fs.String("name", defaultEchoNames, "comma-separated DNS names and IP addresses of the self-signed certificate")
	certOut := fs.String("cert-out", "", "write the certificate (PEM) to this file, for egressd serve --upstream-ca")
	addrOut := fs.String("addr-out", "", "write the bound address (host:port) to this file once it serves")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	o := echoOptions{listen: *listen, certOut: *certOut, addrOut: *addrOut}
	for _, n := range strings.Split(*names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			o.names = append(o.names, n)
		}
	}
	if len(o.names) == 0 {
		fmt.Fprintln(stderr, "egressd echo: --name: want at least one DNS name or IP address")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serveEcho(ctx, o, stdout, stderr); err != nil {
		return fail(stderr, "echo", err)
	}
	return 0
}

// serveEcho serves until ctx ends, then shuts down gracefully. The
// certificate and address files are written once the listener is bound,
// so a file that exists means the server answers.
func serveEcho(ctx context.Context, o echoOptions, stdout, stderr io.Writer) error {
	cert, certPEM, err := echoCertificate(o.names, time.Now())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if o.certOut != "" {
		if err := writeFileAtomic(o.certOut, certPEM); err != nil {
			ln.Close()
			return err
		}
	}
	if o.addrOut != "" {
		if err := writeFileAtomic(o.addrOut, []byte(addr+"\n")); err != nil {
			ln.Close()
			return err
		}
	}
	srv := &http.Server{
		Handler:           &echoHandler{out: stdout},
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stderr, "egressd echo: serving https://%s (certificate for %s)\n", addr, strings.Join(o.names, ", "))
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(stderr, "egressd echo: stopped")
	return nil
}

// echoCertificate makes a self-signed ECDSA P-256 certificate for names
// (IP addresses go into the IP SANs), valid for a day around now. It is its
// own CA, so the PEM serves as a root for the clients of the echo.
func echoCertificate(names []string, now time.Time) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"egressd echo"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(strings.Trim(n, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, so a reader never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// echoAnswer is what egressd echo answers: the request as it arrived.
type echoAnswer struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	// Headers holds each header as received, several values joined by
	// ", "; Host is among them.
	Headers map[string]string `json:"headers"`
}

// echoHandler answers each request with its echoAnswer and logs it as one
// line on out.
type echoHandler struct {
	mu  sync.Mutex
	out io.Writer
}

func (h *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := echoAnswer{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: map[string]string{"Host": r.Host}}
	for name, vs := range r.Header {
		a.Headers[name] = strings.Join(vs, ", ")
	}
	// The body is read (so the client may send it) but not echoed.
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	h.log(a)
	body, _ := json.Marshal(a)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

// log writes one line: method, path (with query) and every header as
// Name="value", sorted by name.
func (h *echoHandler) log(a echoAnswer) {
	var b strings.Builder
	b.WriteString(a.Method)
	b.WriteByte(' ')
	b.WriteString(a.Path)
	if a.Query != "" {
		b.WriteByte('?')
		b.WriteString(a.Query)
	}
	names := make([]string, 0, len(a.Headers))
	for n := range a.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%q", n, a.Headers[n])
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	io.WriteString(h.out, b.String())
}
