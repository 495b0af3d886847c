package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// serveTLS answers every connection on a loopback listener with "ok" after a
// handshake that takes its certificate from c. It stops when the test ends.
func serveTLS(t *testing.T, c *LeafCache) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: c.GetCertificate,
		MinVersion:     tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if err := conn.(*tls.Conn).Handshake(); err != nil {
					return // the client refused us; the client side reports it
				}
				_, _ = io.WriteString(conn, "ok")
			})
		}
	})
	return ln.Addr().String()
}

func TestTLSHandshakeWithLeaf(t *testing.T) {
	ca := testCA(t)
	c := newTestCache(t, ca, LeafConfig{})
	addr := serveTLS(t, c)

	cases := []struct {
		name       string
		serverName string
		roots      *x509.CertPool
		maxVersion uint16
		wantErr    bool
	}{
		{"trusting the CA", "api.example.com", rootPool(ca), 0, false},
		{"trusting the CA, mixed case name", "API.Example.com", rootPool(ca), 0, false},
		{"trusting the CA over TLS 1.2", "api.example.com", rootPool(ca), tls.VersionTLS12, false},
		{"trusting another CA", "api.example.com", rootPool(testCA(t)), 0, true},
		{"trusting nothing", "api.example.com", x509.NewCertPool(), 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dialer := &net.Dialer{Timeout: 5 * time.Second}
			conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{
				ServerName: tc.serverName,
				RootCAs:    tc.roots,
				MaxVersion: tc.maxVersion,
			})
			if tc.wantErr {
				var verr *tls.CertificateVerificationError
				if !errors.As(err, &verr) {
					t.Fatalf("dial = %v, want a certificate verification error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil || string(got) != "ok" {
				t.Fatalf("read %q, %v", got, err)
			}
			state := conn.ConnectionState()
			if len(state.VerifiedChains) != 1 || len(state.VerifiedChains[0]) != 2 {
				t.Fatalf("verified chains %d, want one chain of [leaf, CA]", len(state.VerifiedChains))
			}
			if err := state.PeerCertificates[0].VerifyHostname("api.example.com"); err != nil {
				t.Error(err)
			}
		})
	}
	if n := c.minted.Load(); n != 1 {
		t.Errorf("minted %d leaves for one host, want 1", n)
	}
}

func TestGetCertificateWithoutSNI(t *testing.T) {
	c := newTestCache(t, testCA(t), LeafConfig{})
	if _, err := c.GetCertificate(&tls.ClientHelloInfo{}); !errors.Is(err, ErrInvalidHost) {
		t.Fatalf("GetCertificate without a server name = %v, want ErrInvalidHost", err)
	}
}
