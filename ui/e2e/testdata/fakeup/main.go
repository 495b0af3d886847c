// Command fakeup is the browser tests' stand-in for the outside world, on
// loopback only: an HTTPS upstream (its own throwaway CA, written to
// -dir/upstream-ca.pem) that answers every request 200 without echoing
// it, and a fake OAuth provider (authorize redirects straight back with a
// code; token answers a made-up access token). It prints one JSON line
// with its addresses and stops when its standard input closes.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", "", "where to write upstream-ca.pem (required)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("fakeup: -dir is required")
	}
	cert, caPEM, err := mint()
	if err != nil {
		log.Fatal(err)
	}
	caFile := filepath.Join(*dir, "upstream-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		log.Fatal(err)
	}
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go (&http.Server{Handler: http.HandlerFunc(upstream), ReadHeaderTimeout: 5 * time.Second}).Serve(tls.NewListener(up, &tls.Config{Certificates: []tls.Certificate{cert}}))
	op, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go (&http.Server{Handler: provider(), ReadHeaderTimeout: 5 * time.Second}).Serve(op)
	json.NewEncoder(os.Stdout).Encode(map[string]string{
		"https": up.Addr().String(), "oauth": "http://" + op.Addr().String(), "ca": caFile,
	})
	io.Copy(io.Discard, os.Stdin) // until the harness goes away
}

// upstream answers every request 200; it never echoes what it received
// (which holds real values).
func upstream(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"ok":true,"path":%q}`+"\n", r.URL.Path)
}

func provider() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		back, err := url.Parse(q.Get("redirect_uri"))
		if err != nil || back.Hostname() != "127.0.0.1" && back.Hostname() != "localhost" {
			http.Error(w, "redirect_uri must be on loopback", http.StatusBadRequest)
			return
		}
		bq := back.Query()
		bq.Set("code", "fake-code")
		bq.Set("state", q.Get("state"))
		back.RawQuery = bq.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 12)
		rand.Read(b)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": "fake-access-" + hex.EncodeToString(b), "token_type": "bearer", "expires_in": 3600,
		})
	})
	return mux
}

// mint makes a throwaway CA and a leaf for localhost and 127.0.0.1.
func mint() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egressd e2e upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
