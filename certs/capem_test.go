package certs

import (
	"errors"
	"testing"
)

func TestCAPEMRoundTrip(t *testing.T) {
	certPEM, keyPEM, err := NewCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if string(ca.CertPEM()) != string(certPEM) || ca.Certificate().Subject.CommonName != CACommonName {
		t.Fatalf("parsed %v", ca)
	}
	leafs, err := NewLeafCache(ca, LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leafs.Get("api.example.com"); err != nil {
		t.Fatal(err)
	}
	// Another CA's key does not fit; a key where the certificate goes is
	// not a certificate.
	_, otherKey, err := NewCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(certPEM, otherKey); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("another CA's key: %v, want ErrKeyMismatch", err)
	}
	if _, err := ParseCA(keyPEM, keyPEM); !errors.Is(err, ErrInvalidCA) {
		t.Errorf("a key as the certificate: %v, want ErrInvalidCA", err)
	}
}
