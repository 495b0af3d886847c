package certs

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadOrCreateCACreatesThenReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	first, created, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if !created {
		t.Fatal("first run: created = false")
	}

	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	modes := []struct {
		path string
		want os.FileMode
	}{
		{dir, os.ModeDir | 0o700},
		{keyPath, 0o600},
		{certPath, 0o644},
	}
	for _, m := range modes {
		t.Run("mode "+filepath.Base(m.path), func(t *testing.T) {
			info, err := os.Stat(m.path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode() != m.want {
				t.Errorf("mode %v, want %v", info.Mode(), m.want)
			}
		})
	}
	if files := snapshot(t, dir); len(files) != 2 {
		t.Fatalf("directory holds %v, want only the two CA files (no temporary leftovers)", names(files))
	}

	certData, _ := os.ReadFile(certPath)
	if !bytes.Equal(certData, first.CertPEM()) {
		t.Error("ca.pem differs from CertPEM")
	}
	keyData, _ := os.ReadFile(keyPath)
	if block, _ := pem.Decode(keyData); block == nil || block.Type != "PRIVATE KEY" {
		t.Error("ca-key.pem does not hold a PKCS#8 PRIVATE KEY block")
	} else if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("ca-key.pem: %v", err)
	}

	// Push the mtimes into the past, so that any rewrite would show.
	old := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	for _, p := range []string{certPath, keyPath} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, dir)

	for run := 2; run <= 3; run++ {
		again, created, err := LoadOrCreateCA(dir)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if created {
			t.Errorf("run %d: created = true", run)
		}
		if !bytes.Equal(again.Certificate().Raw, first.Certificate().Raw) {
			t.Errorf("run %d: loaded a different certificate", run)
		}
		if !again.key.Equal(first.key) {
			t.Errorf("run %d: loaded a different key", run)
		}
		if again.Fingerprint() != first.Fingerprint() {
			t.Errorf("run %d: fingerprint changed", run)
		}
		assertUnchanged(t, dir, before)
	}
}

func TestLoadOrCreateCARefuses(t *testing.T) {
	// Two real CAs to take files from.
	srcA, srcB := t.TempDir(), t.TempDir()
	for _, d := range []string{srcA, srcB} {
		if _, _, err := LoadOrCreateCA(d); err != nil {
			t.Fatal(err)
		}
	}
	read := func(dir, name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	certA, keyA, keyB := read(srcA, CACertFile), read(srcA, CAKeyFile), read(srcB, CAKeyFile)

	key := newKey(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	garbageKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})

	cases := []struct {
		name       string
		cert, key  []byte // nil: file absent
		want       error
		wantInText string
	}{
		{"only the certificate", certA, nil, ErrCAIncomplete, CAKeyFile},
		{"only the key", nil, keyA, ErrCAIncomplete, CACertFile},
		{"certificate not PEM", []byte("hello\n"), keyA, ErrInvalidCA, "no PEM block"},
		{"certificate not DER", garbage, keyA, ErrInvalidCA, "parse certificate"},
		{"key in the certificate file", keyA, keyA, ErrInvalidCA, `"PRIVATE KEY" PEM block`},
		{"key not PEM", certA, []byte("-----BEGIN PRIVATE"), ErrInvalidCA, "no PEM private key block"},
		{"key not DER", certA, garbageKey, ErrInvalidCA, "PKCS#8"},
		{"certificate in the key file", certA, certA, ErrInvalidCA, `"CERTIFICATE" PEM block`},
		{"Ed25519 key", certA, pkcs8PEMOf(t, edKey), ErrInvalidCA, "ECDSA"},
		{"key of another CA", certA, keyB, ErrKeyMismatch, "different public key"},
		{"certificate not a CA", certPEMOf(selfSigned(t, key, func(c *x509.Certificate) { c.IsCA = false })),
			pkcs8PEMOf(t, key), ErrInvalidCA, "not a CA"},
		{"certificate expired", certPEMOf(selfSigned(t, key, func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
		})), pkcs8PEMOf(t, key), ErrCAExpired, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.cert != nil {
				writeFile(t, filepath.Join(dir, CACertFile), tc.cert, 0o644)
			}
			if tc.key != nil {
				writeFile(t, filepath.Join(dir, CAKeyFile), tc.key, 0o600)
			}
			before := snapshot(t, dir)
			ca, created, err := LoadOrCreateCA(dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			if ca != nil || created {
				t.Errorf("got ca=%v created=%v alongside the error", ca, created)
			}
			if !strings.Contains(err.Error(), tc.wantInText) {
				t.Errorf("error %q does not mention %q", err, tc.wantInText)
			}
			assertUnchanged(t, dir, before)
		})
	}
}

func TestLoadOrCreateCAAcceptsOperatorSEC1Key(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The layout of `openssl ecparam -genkey`: parameters, then the key.
	keyPEM := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)
	writeFile(t, filepath.Join(dir, CACertFile), certPEMOf(selfSigned(t, key, nil)), 0o644)
	writeFile(t, filepath.Join(dir, CAKeyFile), keyPEM, 0o600)
	ca, created, err := LoadOrCreateCA(dir)
	if err != nil || created {
		t.Fatalf("LoadOrCreateCA = created %v, %v", created, err)
	}
	if !ca.key.Equal(key) {
		t.Error("loaded another key")
	}
}

// Guards against two processes initialising one directory and leaving the
// key of one beside the certificate of the other.
func TestLoadOrCreateCAConcurrentFirstRuns(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	fingerprints := make([]string, n)
	for i := range n {
		wg.Go(func() {
			if ca, _, err := LoadOrCreateCA(dir); err == nil {
				fingerprints[i] = ca.Fingerprint()
			}
		})
	}
	wg.Wait()
	onDisk, created, err := LoadOrCreateCA(dir)
	if err != nil || created {
		t.Fatalf("after the race: created %v, %v", created, err)
	}
	for i, fp := range fingerprints {
		if fp != "" && fp != onDisk.Fingerprint() {
			t.Errorf("caller %d got a CA that is not the one on disk", i)
		}
	}
	if files := snapshot(t, dir); len(files) != 2 {
		t.Errorf("directory holds %v, want only the two CA files", names(files))
	}
}

func TestPublishNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	tmp, final := filepath.Join(dir, "tmp"), filepath.Join(dir, "final")
	writeFile(t, tmp, []byte("new"), 0o600)
	writeFile(t, final, []byte("old"), 0o600)
	if err := publish(tmp, final); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("publish over an existing file: %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(final); string(data) != "old" {
		t.Fatalf("existing file now holds %q", data)
	}
}
