package certs

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File names of the CA inside its directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// PEM block types.
const (
	pemCertificate  = "CERTIFICATE"
	pemPKCS8Key     = "PRIVATE KEY"
	pemSEC1Key      = "EC PRIVATE KEY"
	pemECParameters = "EC PARAMETERS"
)

// LoadOrCreateCA returns the CA kept in dir, creating it on first run.
//
// When both ca.pem and ca-key.pem exist they are loaded and checked (see
// the package doc); created is false. When neither exists, dir is created if
// needed (0700), a new ECDSA P-256 CA is generated, and both files are
// written atomically (key 0600, certificate 0644); created is true. When only
// one exists the answer is ErrCAIncomplete and nothing is written. Running
// it any number of times never rewrites or removes an existing file.
//
// The key file may hold a PKCS#8 "PRIVATE KEY" (what this package writes) or,
// for a CA brought by the operator, a SEC 1 "EC PRIVATE KEY"; only ECDSA keys
// are accepted.
func LoadOrCreateCA(dir string) (ca *CA, created bool, err error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, false, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	switch {
	case certExists && keyExists:
		ca, err := loadCA(certPath, keyPath, now)
		return ca, false, err
	case certExists:
		return nil, false, fmt.Errorf("%w: %s exists but %s does not; restore the key, or move the certificate away to create a new CA",
			ErrCAIncomplete, certPath, keyPath)
	case keyExists:
		return nil, false, fmt.Errorf("%w: %s exists but %s does not; restore the certificate, or move the key away to create a new CA",
			ErrCAIncomplete, keyPath, certPath)
	}
	ca, err = createCA(dir, certPath, keyPath, now)
	if err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// exists reports whether path exists. An error other than "does not exist"
// (permission denied, say) is returned rather than taken as absence, so that
// a CA that cannot be read is never replaced by a new one.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("certs: check %s: %w", path, err)
	}
}

// loadCA reads and checks the CA pair.
func loadCA(certPath, keyPath string, now time.Time) (*CA, error) {
	certData, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA certificate: %w", err)
	}
	keyData, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	cert, err := parseCertPEM(certData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := parseKeyPEM(keyData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	ca, err := newCA(cert, key, now)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	return ca, nil
}

// parseCertPEM parses the first PEM block of data as a certificate.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found in certificate file", ErrInvalidCA)
	}
	if block.Type != pemCertificate {
		return nil, fmt.Errorf("%w: certificate file holds a %q PEM block, want %q", ErrInvalidCA, block.Type, pemCertificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parse certificate: %w", ErrInvalidCA, err)
	}
	return cert, nil
}

// parseKeyPEM parses the first key PEM block of data as an ECDSA private
// key, skipping the "EC PARAMETERS" block that openssl ecparam puts first.
// Its errors never quote key bytes.
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(data)
	for block != nil && block.Type == pemECParameters {
		block, rest = pem.Decode(rest)
	}
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM private key block found in key file", ErrInvalidCA)
	}
	switch block.Type {
	case pemPKCS8Key:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parse PKCS#8 private key: %w", ErrInvalidCA, err)
		}
		key, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: CA key is a %T, want an ECDSA key", ErrInvalidCA, k)
		}
		return key, nil
	case pemSEC1Key:
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: parse EC private key: %w", ErrInvalidCA, err)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("%w: key file holds a %q PEM block, want %q", ErrInvalidCA, block.Type, pemPKCS8Key)
	}
}

// createCA generates a CA and publishes it as keyPath and certPath. Each
// file is written under a temporary name, synced, then hard-linked to its
// final name: unlike a rename, a link fails when the name is taken, so two
// processes initialising the same directory at once cannot end up with the
// key of one and the certificate of the other. If the certificate cannot be
// published, the key just published is removed again.
func createCA(dir, certPath, keyPath string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: create CA directory: %w", err)
	}
	ca, err := generateCA(now)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("certs: encode CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Key, Bytes: der})

	keyTmp, err := writeTemp(dir, CAKeyFile, keyPEM, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(keyTmp)
	certTmp, err := writeTemp(dir, CACertFile, ca.certPEM, 0o644)
	if err != nil {
		return nil, err
	}
	defer os.Remove(certTmp)

	if err := publish(keyTmp, keyPath); err != nil {
		return nil, err
	}
	if err := publish(certTmp, certPath); err != nil {
		_ = os.Remove(keyPath) // ours: published a moment ago
		return nil, err
	}
	syncDir(dir)
	return ca, nil
}

// writeTemp writes data to a new temporary file in dir with mode perm, syncs
// and closes it, and returns its path.
func writeTemp(dir, name string, data []byte, perm os.FileMode) (path string, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("certs: write %s: %w", name, err)
	}
	path = f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			err = fmt.Errorf("certs: write %s: %w", name, err)
		}
	}()
	// Chmod explicitly: the mode must not depend on the umask.
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}

// publish gives the temporary file tmp its final name, never replacing a
// file that is already there. On a file system without hard links it falls
// back to a rename after checking that the name is free.
func publish(tmp, final string) error {
	err := os.Link(tmp, final)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("certs: %s appeared while the CA was being created; not replacing it: %w", final, err)
	}
	taken, serr := exists(final)
	if serr != nil {
		return serr
	}
	if taken {
		return fmt.Errorf("certs: %s appeared while the CA was being created; not replacing it: %w", final, fs.ErrExist)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("certs: publish %s: %w", final, err)
	}
	return nil
}

// syncDir makes the new directory entries durable. It is best effort: some
// file systems cannot sync a directory, and the files themselves are synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
