package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// fakeCA makes a distinct certificate and key text per call (the vault
// treats both as opaque PEM), counting the calls.
type fakeCA struct{ calls atomic.Int64 }

func (f *fakeCA) create() ([]byte, []byte, error) {
	n := f.calls.Add(1)
	var b [16]byte
	rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	return []byte("-----BEGIN CERTIFICATE-----\ncert-" + tag + "\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN PRIVATE KEY-----\nKEY-MATERIAL-" + tag + "-" + string(rune('0'+n%10)) + "\n-----END PRIVATE KEY-----\n"), nil
}

func TestSharedCACreatedOnce(t *testing.T) {
	s := openTest(t)
	if _, _, _, err := s.SharedCA(nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no CA and no create: %v, want ErrNotFound", err)
	}
	boom := errors.New("boom")
	if _, _, _, err := s.SharedCA(func() ([]byte, []byte, error) { return nil, nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failing create: %v", err)
	}
	var f fakeCA
	cert, key, created, err := s.SharedCA(f.create)
	if err != nil || !created || f.calls.Load() != 1 {
		t.Fatalf("first call: created %v, %d creates, %v", created, f.calls.Load(), err)
	}
	cert2, key2, created, err := s.SharedCA(f.create)
	if err != nil || created || f.calls.Load() != 1 || !bytes.Equal(cert, cert2) || !bytes.Equal(key, key2) {
		t.Fatalf("second call: created %v, %d creates, same %v, %v", created, f.calls.Load(), bytes.Equal(key, key2), err)
	}
	// Sealed: the store holds the certificate but not the key, and the
	// pair survives a reopen.
	path, mk := s.Path(), s.key
	s = reopen(t, s, mk)
	cert3, key3, created, err := s.SharedCA(nil)
	if err != nil || created || !bytes.Equal(cert, cert3) || !bytes.Equal(key, key3) {
		t.Fatalf("after reopen: created %v, %v", created, err)
	}
	s.Close()
	raw := storeDump(t, path)
	if !bytes.Contains(raw, bytes.TrimSpace(cert[28:60])) {
		t.Fatal("the store does not hold the certificate: the search is broken")
	}
	if bytes.Contains(raw, []byte("KEY-MATERIAL")) {
		t.Fatal("the store holds the CA key in the clear")
	}
}

// The sealed key is bound to its certificate: a record whose certificate
// was swapped does not open.
func TestSharedCABoundToCertificate(t *testing.T) {
	s := openTest(t)
	var f fakeCA
	if _, _, _, err := s.SharedCA(f.create); err != nil {
		t.Fatal(err)
	}
	path, mk := s.Path(), s.key
	s.Close()
	updateClosed(t, path, func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		var st storedCA
		if _, err := getJSON(meta, metaSharedCA, &st); err != nil {
			return err
		}
		st.CertPEM = "-----BEGIN CERTIFICATE-----\nanother\n-----END CERTIFICATE-----\n"
		return putJSON(meta, metaSharedCA, st)
	})
	s = openAt(t, path, mk, true)
	if _, _, _, err := s.SharedCA(f.create); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("swapped certificate: %v, want ErrDecrypt", err)
	}
	if f.calls.Load() != 1 {
		t.Fatal("a CA that does not open was replaced by a new one")
	}
}

func TestSharedCARekeyed(t *testing.T) {
	s := openTest(t)
	needBoltFile(t, s) // Rekey re-wraps a bbolt file; the cluster's rekey is not built yet
	var f fakeCA
	cert, key, _, err := s.SharedCA(f.create)
	if err != nil {
		t.Fatal(err)
	}
	path, old := s.Path(), s.key
	s.Close()
	nk := NewMasterKey()
	if _, err := Rekey(path, old, nk, time.Second); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, nk, true)
	cert2, key2, created, err := s.SharedCA(nil)
	if err != nil || created || !bytes.Equal(cert, cert2) || !bytes.Equal(key, key2) {
		t.Fatalf("after rekey: created %v, %v", created, err)
	}
}

// Replicas starting together on one PostgreSQL schema, each calling
// SharedCA at once (several times each): they all end with one CA, and
// exactly one call says it created it.
func TestSharedCAReplicasAgree(t *testing.T) {
	dsn := testDSN(t)
	schema := freshPostgresSchema(t, dsn)
	dir := t.TempDir()
	key := NewMasterKey()
	var stores []*Store
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		stores = append(stores, openNode(t, filepath.Join(dir, "shared"), node, key, openPostgres(t, dsn, schema)))
	}
	var f fakeCA
	slow := func() ([]byte, []byte, error) {
		time.Sleep(20 * time.Millisecond) // every caller finds no CA before any stores one
		return f.create()
	}
	type result struct {
		cert, key []byte
		created   bool
	}
	results := make(chan result, 4*len(stores))
	var wg sync.WaitGroup
	for _, s := range stores {
		for range 4 {
			wg.Go(func() {
				c, k, created, err := s.SharedCA(slow)
				if err != nil {
					t.Error(err)
					return
				}
				results <- result{c, k, created}
			})
		}
	}
	wg.Wait()
	close(results)
	var first *result
	createdN := 0
	for r := range results {
		if r.created {
			createdN++
		}
		if first == nil {
			first = &r
			continue
		}
		if !bytes.Equal(r.cert, first.cert) || !bytes.Equal(r.key, first.key) {
			t.Fatal("two replicas got different CAs")
		}
	}
	if first == nil || createdN != 1 {
		t.Fatalf("%d calls created the CA, want 1", createdN)
	}
	if f.calls.Load() < 2 {
		t.Logf("only %d creates ran: the calls did not overlap", f.calls.Load())
	}
}
