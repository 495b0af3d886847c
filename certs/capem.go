package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"
)

// A CA kept somewhere else than a data directory (the shared CA of a
// cluster, sealed in the store, see vault.Store.SharedCA) travels as the
// two PEM texts the files hold: NewCAPEM makes them, ParseCA checks and
// loads them as LoadOrCreateCA checks its files.

// NewCAPEM generates a new CA, as LoadOrCreateCA does on a first run, and
// returns its certificate ("CERTIFICATE") and its key ("PRIVATE KEY",
// PKCS#8) in PEM, the contents of ca.pem and ca-key.pem.
func NewCAPEM() (certPEM, keyPEM []byte, err error) {
	ca, err := generateCA(time.Now())
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encode CA key: %w", err)
	}
	return ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Key, Bytes: der}), nil
}

// ParseCA checks a CA given as PEM texts, the certificate and its ECDSA
// key (PKCS#8 or SEC 1), as LoadOrCreateCA checks its files: a CA
// certificate, unexpired, holding the public half of the key. The errors
// wrap ErrInvalidCA, ErrKeyMismatch or ErrCAExpired and never quote key
// bytes.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return newCA(cert, key, time.Now())
}
