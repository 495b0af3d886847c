package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestGenerateCAShape(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := generateCA(now)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	checks := []struct {
		name string
		ok   bool
	}{
		{"common name", c.Subject.CommonName == CACommonName},
		{"P-256 key", ok && pub.Curve == elliptic.P256()},
		{"signed with ECDSA-SHA256", c.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"is a CA", c.BasicConstraintsValid && c.IsCA},
		{"path length zero", c.MaxPathLen == 0 && c.MaxPathLenZero},
		{"key usage", c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"not before backdated", c.NotBefore.Equal(now.Add(-time.Hour))},
		{"ten years", c.NotAfter.Equal(now.AddDate(10, 0, 0))},
		{"positive serial of at most 128 bits", c.SerialNumber.Sign() > 0 && c.SerialNumber.BitLen() <= 128},
		{"self-signed", c.CheckSignatureFrom(c) == nil},
		{"subject key id", len(c.SubjectKeyId) > 0},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("CA certificate fails check %q", tc.name)
			}
		})
	}
}

func TestGenerateCASerialsDiffer(t *testing.T) {
	a, b := testCA(t), testCA(t)
	if a.Certificate().SerialNumber.Cmp(b.Certificate().SerialNumber) == 0 {
		t.Fatal("two CAs share a serial number")
	}
}

func TestCAForms(t *testing.T) {
	ca := testCA(t)

	block, rest := pem.Decode(ca.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("CertPEM is not exactly one CERTIFICATE block")
	}
	if !bytes.Equal(block.Bytes, ca.Certificate().Raw) {
		t.Error("CertPEM does not hold the CA certificate")
	}
	// CertPEM hands out copies: a caller scribbling on one does not change the next.
	p := ca.CertPEM()
	p[0] = 'X'
	if ca.CertPEM()[0] != '-' {
		t.Error("CertPEM returned shared bytes")
	}

	tc := ca.TLSCertificate()
	if len(tc.Certificate) != 1 || !bytes.Equal(tc.Certificate[0], ca.Certificate().Raw) {
		t.Error("TLSCertificate chain is not [CA]")
	}
	if tc.Leaf != ca.Certificate() {
		t.Error("TLSCertificate.Leaf not set to the CA certificate")
	}
	if k, ok := tc.PrivateKey.(*ecdsa.PrivateKey); !ok || !k.PublicKey.Equal(ca.Certificate().PublicKey) {
		t.Error("TLSCertificate.PrivateKey is not the CA key")
	}
}

// Guards against the CA private key reaching a log line or error message.
func TestCAPrintingHidesKey(t *testing.T) {
	ca := testCA(t)
	secret := ca.key.D.String()
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("loaded", "ca", ca)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", ca),
		"%+v":  fmt.Sprintf("%+v", ca),
		"%#v":  fmt.Sprintf("%#v", ca),
		"%s":   fmt.Sprintf("%s", ca),
		"slog": logged.String(),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, secret) {
				t.Fatalf("output contains the private key: %s", out)
			}
			if !strings.Contains(out, ca.Fingerprint()) {
				t.Errorf("output lacks the fingerprint: %s", out)
			}
		})
	}
}

func TestNewCARefuses(t *testing.T) {
	now := time.Now()
	key := newKey(t)
	cases := []struct {
		name string
		der  []byte
		key  *ecdsa.PrivateKey
		want error
	}{
		{"not a CA", selfSigned(t, key, func(c *x509.Certificate) { c.IsCA = false }), key, ErrInvalidCA},
		{"no basic constraints", selfSigned(t, key, func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = false, false }), key, ErrInvalidCA},
		{"may not sign certificates", selfSigned(t, key, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }), key, ErrInvalidCA},
		{"other key", selfSigned(t, key, nil), newKey(t), ErrKeyMismatch},
		{"expired", selfSigned(t, key, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
		}), key, ErrCAExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := x509.ParseCertificate(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			_, err = newCA(cert, tc.key, now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("newCA error = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("no key usage extension is accepted", func(t *testing.T) {
		cert, err := x509.ParseCertificate(selfSigned(t, key, func(c *x509.Certificate) { c.KeyUsage = 0 }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newCA(cert, key, now); err != nil {
			t.Fatalf("newCA: %v", err)
		}
	})
}
