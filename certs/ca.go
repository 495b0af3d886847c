package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"time"
)

// CACommonName is the subject common name of a CA created by LoadOrCreateCA.
const CACommonName = "egressd CA"

// caValidityYears is how long a created CA is valid.
const caValidityYears = 10

// clockSkew is how far NotBefore is set in the past, for CA and leaves alike,
// so that a client whose clock runs a little behind still accepts them.
const clockSkew = time.Hour

// CA is egressd's certificate authority: its certificate and private key.
//
// A CA is immutable after it is built and safe for concurrent use. Printing
// it (fmt, slog) shows the subject and fingerprint, never the key.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// newCA checks that cert is a CA certificate for key, valid at now, and
// wraps the two. The errors wrap ErrInvalidCA, ErrKeyMismatch or ErrCAExpired.
func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) (*CA, error) {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%w: certificate %q is not a CA certificate (basic constraints CA:TRUE missing)",
			ErrInvalidCA, cert.Subject.CommonName)
	}
	// A certificate without the key usage extension may sign (RFC 5280
	// 4.2.1.3); one that has it must list certificate signing.
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: certificate %q may not sign certificates (key usage lacks certSign)",
			ErrInvalidCA, cert.Subject.CommonName)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: certificate %q holds a different public key", ErrKeyMismatch, cert.Subject.CommonName)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: certificate %q expired on %s", ErrCAExpired,
			cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw}),
	}, nil
}

// generateCA creates a fresh self-signed ECDSA P-256 CA, valid from an hour
// before now for ten years.
func generateCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName, Organization: []string{"egressd"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse created CA certificate: %w", err)
	}
	return newCA(cert, key, now)
}

// serialLimit is 2^128: serials are 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a positive serial number of up to 128 bits from
// crypto/rand.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("certs: random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// Certificate returns the parsed CA certificate. It is shared: callers must
// not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM form, the bytes that sandboxes
// install as a trusted root. Each call returns a fresh copy.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// TLSCertificate returns the CA as a tls.Certificate (certificate, private
// key, and Leaf set), the form goproxy takes as its MITM CA.
func (ca *CA) TLSCertificate() tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{ca.cert.Raw},
		PrivateKey:  ca.key,
		Leaf:        ca.cert,
	}
}

// Fingerprint returns the SHA-256 of the CA certificate's DER bytes as lower
// case hex, for an operator to compare what a sandbox trusts with what
// egressd serves.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// String describes the CA by subject, expiry and fingerprint, never its key.
func (ca *CA) String() string {
	return fmt.Sprintf("CA %q (expires %s, sha256 %s)", ca.cert.Subject.CommonName,
		ca.cert.NotAfter.UTC().Format(time.DateOnly), ca.Fingerprint())
}

// GoString keeps %#v from printing the private key.
func (ca *CA) GoString() string { return ca.String() }

// LogValue keeps slog from printing the private key.
func (ca *CA) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("subject", ca.cert.Subject.CommonName),
		slog.Time("not_after", ca.cert.NotAfter),
		slog.String("sha256", ca.Fingerprint()),
	)
}
